"""DNS-rebinding protection: check the `Host` and `Origin` headers of each request.

A web page can make a browser talk to a server on the user's machine by pointing its own
domain at 127.0.0.1 (DNS rebinding). The browser then sends the attacker's name in `Host`
and the attacker's page in `Origin`, which is how such requests are told apart from real
local clients. The spec requires servers to validate `Origin`; checking `Host` as well also
stops requests that carry no `Origin` (a rebound page's same-origin fetches can omit it).

With no lists configured the guard only acts when the connection reached a loopback
address, so a server deployed behind a public name is not affected by default.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi.asgi.cors import CORSOrigins
from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, MCPError
from mcp_asgi.transports.http_common import REPEATED_HEADERS

__all__ = ["HostOriginGuard"]

# Compiled on first use (by `re`'s cache), not by `import mcp_asgi`: only `allowed_origins`
# entries are checked with it.
_SCHEME = r"[a-z][a-z0-9+.-]*"
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# Distinct `scope["server"]` values are few (one per listening address); the cap only
# guards against an ASGI server that reports something unusual per connection.
_CACHE_LIMIT = 256

# (hostname pattern, port or None for any port). A hostname pattern starting with "*."
# matches subdomains; "*" alone matches any host.
_HostRule = tuple[str, int | None]
# (scheme, hostname pattern, port or None for any port)
_OriginRule = tuple[str, str, int | None]


class HostOriginGuard:
    """Reject requests whose `Host` or `Origin` header could come from a DNS-rebinding page.

    `allowed_hosts` / `allowed_origins` left as None mean automatic: only when the request
    arrived on a loopback address must `Host` (and `Origin`, if sent) name a loopback host.
    A list given is always enforced. Host entries are `host`, `host:port`, `host:*`,
    `*.example.com` or `"*"`; origin entries are `scheme://host[:port]` with the same
    wildcards, or `"*"`. Without `allowed_origins`, an `Origin` passes when its host part
    passes `allowed_hosts`. The origins the app's CORS middleware allows (`cors`) pass too,
    so a browser origin is configured in one place.
    """

    def __init__(
        self,
        allowed_hosts: Sequence[str] | None = None,
        allowed_origins: Sequence[str] | None = None,
        *,
        cors: CORSOrigins | None = None,
    ) -> None:
        self.allowed_hosts = _string_list(allowed_hosts, "allowed_hosts")
        self.allowed_origins = _string_list(allowed_origins, "allowed_origins")
        self._host_rules = None if self.allowed_hosts is None else [_host_rule(e) for e in self.allowed_hosts]
        self._origin_rules = (
            None if self.allowed_origins is None else [_origin_rule(e) for e in self.allowed_origins if e != "*"]
        )
        self._any_host = self.allowed_hosts is not None and "*" in self.allowed_hosts
        self._any_origin = self.allowed_origins is not None and "*" in self.allowed_origins
        self._loopback_servers: dict[object, bool] = {}
        self._cors = cors if cors is not None and (cors.exact or cors.patterns) else None
        self._cors_wildcard = cors is not None and cors.wildcard

    def check(self, scope: Scope, headers: dict[str, str]) -> MCPError | None:
        """The 403 (or 400) error to answer with, or None when the request may proceed."""
        repeated = headers.get(REPEATED_HEADERS)
        if repeated is not None:
            return _rejected_repeats(repeated)
        host = headers.get("host")
        origin = headers.get("origin")
        if self._host_rules is not None and self._origin_rules is not None:
            # Both lists explicit: no need to look at where the connection arrived.
            if not self._any_host and not _host_allowed(self._host_rules, host, scope):
                return _rejected_host(host, listed=True)
            if origin is not None and not self._any_origin and not _origin_allowed(self._origin_rules, origin):
                if self._cors is None or not self._cors.allows(origin):
                    return self._refuse_origin(origin, listed=True)
            return None
        loopback = self._on_loopback(scope)
        if self._host_rules is not None:
            if not self._any_host and not _host_allowed(self._host_rules, host, scope):
                return _rejected_host(host, listed=True)
        elif loopback and not _is_loopback_name(_host_and_port(host)[0] if host is not None else None):
            return _rejected_host(host, listed=False)
        if origin is None or (self._cors is not None and self._cors.allows(origin)):
            return None
        if self._origin_rules is not None:
            if not self._any_origin and not _origin_allowed(self._origin_rules, origin):
                return self._refuse_origin(origin, listed=True)
        elif self._host_rules is not None:
            if not self._any_host and not _origin_host_allowed(self._host_rules, origin):
                return self._refuse_origin(origin, listed=True)
        elif loopback and not _is_loopback_name(_origin_parts(origin)[1]):
            return self._refuse_origin(origin, listed=False)
        return None

    def _refuse_origin(self, origin: str, *, listed: bool) -> MCPError:
        error = _rejected_origin(origin, listed=listed)
        if self._cors_wildcard:
            error.message += (
                " The CORS middleware's allow_origins=['*'] does not lift this check: list the origin there "
                "(or in allowed_origins) to let its pages call this server."
            )
        return error

    def _on_loopback(self, scope: Scope) -> bool:
        server = scope.get("server")
        try:
            return self._loopback_servers[server]
        except KeyError:
            pass
        except TypeError:  # an unhashable value from an unusual ASGI server
            return _is_loopback_server(server)
        result = _is_loopback_server(server)
        if len(self._loopback_servers) >= _CACHE_LIMIT:
            self._loopback_servers.clear()
        self._loopback_servers[server] = result
        return result


def _string_list(value: Sequence[str] | None, argument: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ValueError(f"`{argument}` must be a list of strings, not the string {value!r}; write [{value!r}]")
    entries = list(value)
    for entry in entries:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"`{argument}` entries must be non-empty strings, got {entry!r}")
    return [entry.strip().lower() for entry in entries]


def _host_rule(entry: str) -> _HostRule:
    if entry == "*":
        return ("*", None)
    host, port = _split_port(entry, "allowed_hosts", entry)
    return (host, port)


def _origin_rule(entry: str) -> _OriginRule:
    scheme, sep, rest = entry.partition("://")
    if not sep or not re.fullmatch(_SCHEME, scheme) or not rest or "/" in rest:
        raise ValueError(
            f"`allowed_origins` entry {entry!r} must look like 'https://example.com' or 'http://localhost:*' "
            "(scheme://host[:port], no path)"
        )
    host, port = _split_port(rest, "allowed_origins", entry)
    if port is None and not rest.endswith(":*"):
        # An origin without a port means the scheme's default port, as browsers send it.
        port = _DEFAULT_PORTS.get(scheme)
    return (scheme, host, port)


def _split_port(text: str, argument: str, entry: str) -> tuple[str, int | None]:
    """`host[:port]` (port may be `*`) from a configuration entry; IPv6 hosts in brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ValueError(f"`{argument}` entry {entry!r} has an unclosed '[' around an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"`{argument}` entry {entry!r}: expected ':port' after the IPv6 address")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        # No port, or a bare IPv6 address such as `::1`.
        host, port_text = text, None
    if not host:
        raise ValueError(f"`{argument}` entry {entry!r} has no host name")
    if port_text is None or port_text == "*":
        return host.rstrip("."), None
    if not _is_port(port_text):
        raise ValueError(f"`{argument}` entry {entry!r} has an invalid port {port_text!r}; use a number or '*'")
    return host.rstrip("."), int(port_text)


# Clients send the same few values on every request; parsing them dominates `check`.
@functools.lru_cache(maxsize=512)
def _host_and_port(value: str) -> tuple[str | None, int | None]:
    """Hostname (lower-case, no brackets) and port of a `Host` header; (None, None) if unreadable."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end == -1:
            return None, None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None, None
        port_text = rest[1:] if rest else ""
    elif ":" in value:
        host, _, port_text = value.rpartition(":")
        if ":" in host:  # an unbracketed IPv6 address is not a valid Host
            return None, None
    else:
        host, port_text = value, ""
    if not host:
        return None, None
    if not port_text:
        return host.rstrip("."), None
    if not _is_port(port_text):
        return None, None
    return host.rstrip("."), int(port_text)


def _is_port(text: str) -> bool:
    """A TCP port written in ASCII digits (`str.isdigit` also accepts '²', which `int` refuses)."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and 0 < int(text) < 65536


@functools.lru_cache(maxsize=512)
def _origin_parts(origin: str) -> tuple[str, str | None, int | None]:
    """Scheme, hostname and port (defaulted from the scheme) of an `Origin` header."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        return "", None, None
    scheme = parts.scheme.lower()
    if hostname is None:
        return scheme, None, None  # e.g. "null", sent by sandboxed frames and file:// pages
    return scheme, hostname.rstrip("."), port if port is not None else _DEFAULT_PORTS.get(scheme)


def _host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def _host_allowed(rules: list[_HostRule], value: str | None, scope: Scope) -> bool:
    if value is None:
        return False
    host, port = _host_and_port(value)
    if host is None:
        return False
    if port is None:
        port = _DEFAULT_PORTS.get(scope.get("scheme", "http"))
    return any(_host_matches(pattern, host) and (want is None or want == port) for pattern, want in rules)


def _origin_host_allowed(rules: list[_HostRule], origin: str) -> bool:
    _, host, port = _origin_parts(origin)
    if host is None:
        return False
    return any(_host_matches(pattern, host) and (want is None or want == port) for pattern, want in rules)


def _origin_allowed(rules: list[_OriginRule], origin: str) -> bool:
    scheme, host, port = _origin_parts(origin)
    if host is None:
        return False
    for want_scheme, pattern, want_port in rules:
        if want_scheme == scheme and _host_matches(pattern, host) and (want_port is None or want_port == port):
            return True
    return False


@functools.lru_cache(maxsize=512)
def _is_loopback_name(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _is_loopback_server(server: object) -> bool:
    # `server` is (host, port) for TCP, (path, None) for a unix socket, or None when unknown.
    if not isinstance(server, (tuple, list)) or len(server) != 2 or not isinstance(server[0], str):
        return False
    host = server[0].strip("[]").lower()
    return _is_loopback_name(host.split("%", 1)[0])


_WHY_LOCAL = "as DNS rebinding protection, because this server is listening on a localhost address"


def _rejected_host(value: str | None, *, listed: bool) -> MCPError:
    if value is None:
        what = "Forbidden: the request has no Host header"
    else:
        what = f"Forbidden: Host header {value!r} is not allowed"
    if listed:
        why = "it does not match allowed_hosts"
    else:
        why = f"only localhost names are accepted {_WHY_LOCAL}"
    fix = "To serve this server under another name, list it: http_app(allowed_hosts=['mcp.example.com:8000'])."
    if value is not None:
        host, port = _host_and_port(value)
        if host is not None:
            shown = f"[{host}]" if ":" in host else host
            example = f"{shown}:{port}" if port is not None else shown
            fix = f"To serve this server under that name, add it: http_app(allowed_hosts=[{example!r}])."
    return MCPError(INVALID_REQUEST, f"{what}: {why}. {fix}", http_status=403)


def _rejected_repeats(names: str) -> MCPError:
    # 400, not 403: the request is malformed rather than refused (RFC 9112 section 3.2 asks for 400
    # when Host is repeated; RFC 6454 allows one Origin). Refused on every server, not only on
    # localhost: each layer picks its own copy (Starlette the first, `header_map` the last), so a
    # CORS middleware, a proxy and this guard could each approve a different origin.
    shown = " and ".join(name.title() for name in names.split(", "))
    return MCPError(
        INVALID_REQUEST,
        f"Bad request: more than one {shown} header; send exactly one "
        "(repeated Host/Origin headers are refused as DNS rebinding protection)",
        http_status=400,
    )


def _rejected_origin(value: str, *, listed: bool) -> MCPError:
    what = f"Forbidden: Origin header {value!r} is not allowed"
    if listed:
        why = "it does not match allowed_origins (or allowed_hosts when allowed_origins is not set)"
    else:
        why = f"only pages served from localhost may call it {_WHY_LOCAL}"
    fix = (
        f"If pages from that origin should be able to call this server, add it: "
        f"http_app(allowed_origins=[{value.strip()!r}])."
    )
    return MCPError(INVALID_REQUEST, f"{what}: {why}. {fix}", http_status=403)


def guarded(guard: HostOriginGuard, app: ASGIApp) -> ASGIApp:
    """`app` behind the guard: refused requests get 403 and never reach it."""
    from mcp_asgi.transports.http_common import header_map, send_error

    async def guarded_app(scope: Scope, receive: Receive, send: Send) -> None:
        refused = guard.check(scope, header_map(scope))
        if refused is not None:
            await send_error(send, refused)
            return
        await app(scope, receive, send)

    return guarded_app


def guarded_route(guard: HostOriginGuard, route: Route) -> Route:
    """A copy of `route` whose endpoint sits behind the guard (the original may serve other apps)."""
    copied = copy.copy(route)
    copied.app = guarded(guard, route.app)
    return copied
