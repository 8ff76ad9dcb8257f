"""CORS preset for browser MCP clients.

Browsers only let a page read `Mcp-Session-Id` if the server exposes it, and only send the
MCP request headers after a preflight allows them. Starlette's `CORSMiddleware` does the
work; this module knows which methods and headers MCP needs.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

from starlette.middleware import Middleware

__all__ = ["MCP_ALLOW_HEADERS", "MCP_EXPOSE_HEADERS", "MCP_METHODS", "CORSOrigins", "cors_middleware", "cors_origins"]

# GET opens the server-to-client SSE stream, DELETE ends a session.
MCP_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
MCP_ALLOW_HEADERS = (
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Mcp-Method",
    "Mcp-Name",
    "Last-Event-ID",
    "Authorization",
    "Content-Type",
    "Accept",
)
# WWW-Authenticate: a browser client must read the 401 challenge to find the authorization server.
MCP_EXPOSE_HEADERS = ("Mcp-Session-Id", "MCP-Protocol-Version", "WWW-Authenticate")


def cors_middleware(
    allow_origins: Iterable[str],
    *,
    allow_credentials: bool = False,
    max_age: int = 600,
    allow_headers: Iterable[str] = (),
    expose_headers: Iterable[str] = (),
) -> Middleware:
    """A `CORSMiddleware` entry preset for MCP over Streamable HTTP.

    Allows the MCP methods and request headers and exposes `Mcp-Session-Id` and
    `MCP-Protocol-Version` to page scripts. `CORSMiddleware` cannot wildcard a header
    prefix, so tools that send `Mcp-Param-*` headers must list each one in `allow_headers`.

        app = FastAPI(middleware=[cors_middleware(["https://app.example.com"])])
    """
    origins = _strings(allow_origins, "allow_origins")
    extra_allow = _strings(allow_headers, "allow_headers")
    extra_expose = _strings(expose_headers, "expose_headers")
    if "*" in origins and allow_credentials:
        raise ValueError(
            "cors_middleware() `allow_origins=['*']` cannot be combined with `allow_credentials=True`: "
            "any website could then make credentialed MCP calls. List the trusted origins instead."
        )
    if not isinstance(max_age, int) or max_age < 0:
        raise ValueError(f"cors_middleware() `max_age` must be seconds >= 0, got {max_age!r}")
    from starlette.middleware.cors import CORSMiddleware  # on use: `import mcp_asgi` skips it

    return Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=MCP_METHODS,
        allow_headers=_unique(MCP_ALLOW_HEADERS + extra_allow),
        allow_credentials=allow_credentials,
        expose_headers=_unique(MCP_EXPOSE_HEADERS + extra_expose),
        max_age=max_age,
    )


def _strings(values: Iterable[str], argument: str) -> tuple[str, ...]:
    # A lone string is iterable too; taking it as a list of characters would silently allow nothing.
    if isinstance(values, str | bytes):
        raise TypeError(f"cors_middleware() `{argument}` must be a list of strings, not a single string")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"cors_middleware() `{argument}` must contain strings, got {item!r}")
    return items


def _unique(names: tuple[str, ...]) -> list[str]:
    # Header names are case-insensitive; keep the first spelling of each.
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())


# Not a dataclass: `import mcp_asgi` loads this module, and creating a dataclass exec()s the
# source of its methods (ten of them were a quarter of our import cost).
class CORSOrigins:
    """The browser origins an app's CORS middleware allows, for the Host/Origin guard to allow too.

    Only explicit entries count: `allow_origins=["*"]` says "any page may read my answers",
    which suits a public API but, adopted by the guard, would let every website the user visits
    drive a server on their machine; the DNS-rebinding protection stays on and `wildcard` lets
    the guard's refusal explain why. An `allow_origin_regex` is adopted: it is written for the
    origins it names, and Starlette matches it the same way (`fullmatch`).
    """

    __slots__ = ("exact", "patterns", "wildcard")

    def __init__(
        self, exact: frozenset[str] = frozenset(), patterns: tuple[re.Pattern[str], ...] = (), wildcard: bool = False
    ) -> None:
        self.exact = exact
        self.patterns = patterns
        self.wildcard = wildcard

    def __repr__(self) -> str:
        return f"CORSOrigins(exact={self.exact!r}, patterns={self.patterns!r}, wildcard={self.wildcard!r})"

    def allows(self, origin: str) -> bool:
        """Whether the CORS middleware would answer `origin` (exact string or regex, as Starlette)."""
        return origin in self.exact or any(pattern.fullmatch(origin) for pattern in self.patterns)


def cors_origins(middleware: Iterable[Middleware]) -> CORSOrigins:
    """The origins allowed by the `CORSMiddleware` entries (including `cors_middleware()`) of `middleware`."""
    from starlette.middleware.cors import CORSMiddleware

    exact: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    wildcard = False
    for entry in middleware:
        if not (inspect.isclass(entry.cls) and issubclass(entry.cls, CORSMiddleware)):
            continue
        options = _cors_options(entry)
        origins = options.get("allow_origins") or ()
        for origin in [origins] if isinstance(origins, str) else origins:
            if origin == "*":
                wildcard = True
            elif isinstance(origin, str):
                exact.add(origin)
        regex = options.get("allow_origin_regex")
        if isinstance(regex, str):
            patterns.append(re.compile(regex))
    return CORSOrigins(frozenset(exact), tuple(patterns), wildcard)


def _cors_options(entry: Middleware) -> dict[str, Any]:
    # Options may be given by position too (`Middleware(CORSMiddleware, ["https://a.example"])`).
    try:
        signature = inspect.signature(entry.cls)
        options = dict(signature.bind_partial(None, *entry.args, **entry.kwargs).arguments)
    except (TypeError, ValueError):  # a subclass with its own signature: keywords are all we can read
        return dict(entry.kwargs)
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            options.update(options.pop(parameter.name, {}))
    return options
