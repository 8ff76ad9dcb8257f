"""Serve an MCP server inside a Quart app: `mount_quart(app, "/mcp", mcp)`.

Quart has no ASGI mounts, so the MCP path is split off in front of `app.asgi_app` (ASGI
middleware added to `app.asgi_app` afterwards wraps the MCP app too), and the server's
lifespan runs in the app's `while_serving`. Tools get the Quart app as `ctx.app` (its
`config` included). `/mcp` and `/mcp/` are both answered, never redirected.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi.asgi.lifespan import combine_lifespans
from mcp_asgi.asgi.prefix import check_prefix, mounted_scope, target_app

__all__ = ["QuartMount", "mount_quart"]


def mount_quart(app: Any, path: str, target: Any) -> QuartMount:
    """Serve `target` (an MCP server or any ASGI app) at `path` in the Quart `app`, lifespan included.

    Returns the ASGI layer put in front of the app's previous `app.asgi_app`.
    """
    if not callable(getattr(app, "while_serving", None)) or not hasattr(app, "asgi_app"):
        raise TypeError(f"mount_quart() `app` must be a Quart application, got {app!r}")
    prefix = check_prefix(path, "mount_quart")
    mcp_app = target_app(target, "mount_quart")
    lifespan = combine_lifespans(mcp_app)

    async def run_mcp_lifespan() -> AsyncGenerator[None, None]:
        async with lifespan(app):
            yield

    app.while_serving(run_mcp_lifespan)
    layer = QuartMount(app.asgi_app, prefix, mcp_app, app)
    app.asgi_app = layer
    return layer


class QuartMount:
    """ASGI layer: requests under the prefix go to the MCP app, the rest (and lifespan) to Quart."""

    def __init__(self, quart_asgi: ASGIApp, prefix: str, mcp_app: ASGIApp, host: Any) -> None:
        self.quart_asgi = quart_asgi
        self.prefix = prefix
        self.mcp_app = mcp_app
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        child = mounted_scope(scope, self.prefix, self.host) if scope["type"] == "http" else None
        if child is None:
            await self.quart_asgi(scope, receive, send)
        else:
            await self.mcp_app(child, receive, send)
