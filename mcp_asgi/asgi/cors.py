"""CORS preset for browser MCP clients.

Browsers only let a page read `Mcp-Session-Id` if the server exposes it, and only send the
MCP request headers after a preflight allows them. Starlette's `CORSMiddleware` does the
work; this module knows which methods and headers MCP needs.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

__all__ = ["MCP_ALLOW_HEADERS", "MCP_EXPOSE_HEADERS", "MCP_METHODS", "cors_middleware"]

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
MCP_EXPOSE_HEADERS = ("Mcp-Session-Id", "MCP-Protocol-Version")


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
