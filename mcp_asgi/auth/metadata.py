"""RFC 9728 Protected Resource Metadata: the public document that tells clients which authorization server to ask.

Served with no token, to GET (and HEAD), readable by pages of any origin (browser clients
discover it with `fetch`). Where it is served:

- standalone (`http_app()`, `run()`): by the MCP app itself, at
  `/.well-known/oauth-protected-resource{path}` and at `/.well-known/oauth-protected-resource`;
- `mount(app, "/api/v1/mcp", mcp)`: on the host, at `/.well-known/oauth-protected-resource/api/v1/mcp`;
- mounted by hand: add `metadata_routes(mcp, "/api/v1/mcp")` to the host's routes.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mcp_asgi.auth.bearer import AuthGate, BearerAuth, HostAuth
from mcp_asgi.auth.resource import WELL_KNOWN, join_paths, origin_of, url_path
from mcp_asgi.protocol.jsonrpc import encode

__all__ = ["MetadataEndpoint", "metadata_routes"]

_ALLOW = b"GET, HEAD, OPTIONS"
_HEADER_NAMES = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")


class MetadataEndpoint:
    """The ASGI endpoint answering with the metadata document of one protected MCP endpoint.

    `endpoint_path` is the MCP endpoint's path relative to the `root_path` this endpoint is
    called with; None means "what follows `/.well-known/oauth-protected-resource` in the
    request's path" (the RFC 9728 location, path parameters of a mount included).
    """

    def __init__(self, auth: BearerAuth | HostAuth, endpoint_path: str | None) -> None:
        self.auth = auth
        self.endpoint_path = endpoint_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        cors = [(b"access-control-allow-origin", b"*")]
        if method == "OPTIONS":
            # A CORS preflight: browser clients send MCP-Protocol-Version with their discovery fetch.
            headers = [*cors, (b"access-control-allow-methods", _ALLOW), (b"access-control-max-age", b"86400")]
            asked = _header(scope, b"access-control-request-headers")
            if asked and _HEADER_NAMES.fullmatch(asked.strip()):
                headers.append((b"access-control-allow-headers", asked.strip().encode("latin-1")))
            await _respond(send, 204, b"", headers)
            return
        if method not in ("GET", "HEAD"):
            body = b'{"error":"method_not_allowed","error_description":"GET the protected resource metadata"}'
            await _respond(send, 405, body, [*cors, (b"allow", _ALLOW), (b"content-type", b"application/json")])
            return
        body = encode(self.auth.metadata(self._resource(scope)))
        headers = [*cors, (b"content-type", b"application/json")]
        await _respond(send, 200, b"" if method == "HEAD" else body, headers, length=len(body))

    def _resource(self, scope: Scope) -> str:
        root_path: str = scope.get("root_path", "")
        if self.endpoint_path is not None:
            endpoint = self.endpoint_path
        else:
            path: str = scope["path"]
            # The path left after root_path, as Starlette routes it; the route matched WELL_KNOWN + endpoint.
            if root_path and path.startswith(root_path):
                path = path[len(root_path) :]
            endpoint = path[len(WELL_KNOWN) :] if path.startswith(WELL_KNOWN) else ""
        return origin_of(scope) + url_path(join_paths(root_path, endpoint))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], length: int | None = None
) -> None:
    size = len(body) if length is None else length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(size).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def metadata_routes(target: Any, path: str = "/mcp", *, root: bool = False) -> list[Route]:
    """Starlette routes serving the RFC 9728 metadata of a protected MCP endpoint that a host mounted by hand.

    `target` is the `MCPServer` (built with `auth=`), the app from `http_app(auth=...)`, or the
    `BearerAuth`/`HostAuth` itself; `path` is the endpoint's path in the host app (what follows
    the host's root in the endpoint's URL). The route is
    `/.well-known/oauth-protected-resource{path}`; `root=True` also serves the document at
    `/.well-known/oauth-protected-resource` (for a host with one MCP endpoint: clients that got
    no challenge try it last).

        app = Starlette(routes=[Mount("/api/v1/mcp", mcp.http_app(path="/")), *metadata_routes(mcp, "/api/v1/mcp")])

    `mount(app, "/api/v1/mcp", mcp)` does this by itself. Either way the 401 challenges point
    at a copy that really exists: this one under `mount()`, else the one the MCP app serves
    itself, under its mount prefix.
    """
    auth = _auth_of(target)
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"metadata_routes() `path` must be the endpoint's path starting with '/', got {path!r}")
    endpoint = join_paths(path)
    routes = [Route(WELL_KNOWN + endpoint, MetadataEndpoint(auth, None))] if endpoint else []
    if root or not endpoint:
        routes.append(Route(WELL_KNOWN, MetadataEndpoint(auth, endpoint)))
    return routes


def _auth_of(target: Any) -> BearerAuth | HostAuth:
    if isinstance(target, (BearerAuth, HostAuth)):
        return target
    gate = getattr(getattr(target, "state", None), "mcp_auth_gate", None)
    if isinstance(gate, AuthGate):
        return gate.auth
    auth = getattr(target, "auth", None)
    if isinstance(auth, (BearerAuth, HostAuth)):
        return auth
    raise ValueError(
        f"metadata_routes() needs a protected MCP server: {target!r} has no auth; "
        "build it with MCPServer(..., auth=BearerAuth(...)) or pass the BearerAuth itself"
    )


def app_routes(auth: BearerAuth | HostAuth, endpoint_path: str) -> list[Route]:
    """The routes an MCP app serves its own endpoint's metadata at: under the endpoint's path, and bare."""
    endpoint = join_paths(endpoint_path)
    routes = [Route(WELL_KNOWN, MetadataEndpoint(auth, endpoint))]
    if endpoint:
        routes.insert(0, Route(WELL_KNOWN + endpoint, MetadataEndpoint(auth, endpoint)))
    return routes
