"""Where the protected endpoint and its RFC 9728 metadata are, as a client sees them, from the ASGI scope.

The resource URL is the endpoint's public URL: the request's scheme (uvicorn's
`--proxy-headers` turns a proxy's `X-Forwarded-Proto` into `scope["scheme"]`), its `Host`
header, `root_path` (grown by every `Mount` on the way, and by uvicorn's `--root-path`) and
the endpoint's path inside the MCP app. The metadata URL is the same origin plus
`/.well-known/oauth-protected-resource`, put before the endpoint's path at the root of the
app that really serves the document:

- `mount()` registers the document on the host, and marks the requests it routes to the MCP
  app with the host's `root_path` (`METADATA_BASE`): the document is at
  `{host root}/.well-known/oauth-protected-resource{mount path}{endpoint path}`;
- otherwise (standalone, or mounted by hand) the MCP app serves it itself, at
  `{root_path}/.well-known/oauth-protected-resource{endpoint path}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

WELL_KNOWN = "/.well-known/oauth-protected-resource"
# Set by `ExactMount` (mcp_asgi/asgi/mount.py) on requests it routes to an MCP app whose
# metadata `mount()` registered on the host: (that MCP app, the host's root_path).
METADATA_BASE = "mcp_asgi.metadata_base"

# What a Host header may hold (RFC 3986 reg-name, IPv4, [IPv6], port). Anything else (quotes,
# spaces, slashes) is not echoed into a URL or a header: the server's own address is used.
_HOST = re.compile(r"[A-Za-z0-9._~%!$&'()*+,;=-]+(:[0-9]*)?|\[[0-9A-Fa-f:.]+(%[A-Za-z0-9._~-]+)?\](:[0-9]*)?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters of a path that stay as they are in a URL (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def origin_of(scope: Mapping[str, Any]) -> str:
    """`scheme://host[:port]` of the request, lower-cased, as the client addressed it."""
    scheme = str(scope.get("scheme") or "http").lower()
    if scheme not in _DEFAULT_PORTS:
        scheme = "https" if scheme == "wss" else "http"
    host = None
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1").strip()
            break
    if not host or not _HOST.fullmatch(host):
        host = _server_host(scope.get("server"), scheme)
    return f"{scheme}://{host.lower()}"


def _server_host(server: Any, scheme: str) -> str:
    if not isinstance(server, (tuple, list)) or len(server) != 2 or not isinstance(server[0], str):
        return "localhost"
    name, port = server
    shown = f"[{name}]" if ":" in name else name
    if not isinstance(port, int) or port == _DEFAULT_PORTS[scheme]:
        return shown
    return f"{shown}:{port}"


def url_path(path: str) -> str:
    """A decoded ASGI path (`root_path`, a route path) as it is written in a URL."""
    return quote(path, safe=_PATH_SAFE)


def join_paths(*parts: str) -> str:
    """Paths joined with one slash between them and none at the end; "" for the root."""
    joined = "/".join(part.strip("/") for part in parts if part.strip("/"))
    return "/" + joined if joined else ""


def resource_url(scope: Mapping[str, Any], endpoint_path: str) -> str:
    """The endpoint's public URL (no trailing slash): origin, `root_path`, then its path in the MCP app."""
    return origin_of(scope) + url_path(join_paths(scope.get("root_path", ""), endpoint_path))


def metadata_url(scope: Mapping[str, Any], endpoint_path: str, app: Any) -> str:
    """The absolute URL at which the RFC 9728 document of the endpoint `app` serves at `endpoint_path` is."""
    root_path: str = scope.get("root_path", "")
    base = scope.get(METADATA_BASE)
    if isinstance(base, tuple) and len(base) == 2 and base[0] is app and root_path.startswith(base[1]):
        # Registered on the host by mount(): at the host's root, before the mount path.
        host_root, mounted_at = base[1], root_path[len(base[1]) :]
    else:
        host_root, mounted_at = root_path, ""
    path = join_paths(host_root) + WELL_KNOWN + join_paths(mounted_at, endpoint_path)
    return origin_of(scope) + url_path(path)


def normalized(url: str) -> str:
    """`url` with its scheme and host lower-cased and no trailing slash, for comparing resource URLs."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url
    path = parts.path.rstrip("/")
    query = "?" + parts.query if parts.query else ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}{query}"


def check_resource(resource: str | None) -> str | None:
    """The explicit `resource=` URL, checked: absolute http(s), no fragment (RFC 8707 section 2)."""
    if resource is None:
        return None
    if not isinstance(resource, str):
        raise TypeError(f"`resource` must be the endpoint's URL as a string, got {resource!r}")
    try:
        parts = urlsplit(resource)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ValueError(
            f"`resource` must be the endpoint's absolute URL such as 'https://mcp.example.com/mcp' "
            f"(http or https, no #fragment); got {resource!r}"
        )
    return resource
