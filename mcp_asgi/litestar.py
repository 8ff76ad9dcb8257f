"""Serve an MCP server inside a Litestar app: `Litestar([...], plugins=[MCPPlugin(mcp, "/mcp")])`.

The plugin adds an ASGI mount at the path (so the app's middleware wraps it like any route)
and the server's lifespan to the app's `lifespan=[...]`. Tools get the Litestar app as
`ctx.app` (its `app.state` included). `/mcp` and `/mcp/` are both answered, never redirected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.handlers import asgi
from litestar.plugins import InitPluginProtocol
from starlette.types import Receive, Scope, Send

from mcp_asgi.asgi.lifespan import combine_lifespans
from mcp_asgi.asgi.prefix import check_prefix, target_app

if TYPE_CHECKING:
    from litestar.config.app import AppConfig

__all__ = ["MCPPlugin"]


class MCPPlugin(InitPluginProtocol):
    """A Litestar plugin mounting `target` (an MCP server or any ASGI app) at `path`, lifespan included.

        app = Litestar(route_handlers=[index], plugins=[MCPPlugin(mcp, "/mcp")])
    """

    def __init__(self, target: Any, path: str = "/mcp") -> None:
        self.prefix = check_prefix(path, "MCPPlugin")
        self.app = target_app(target, "MCPPlugin")
        self.lifespan = combine_lifespans(self.app)
        prefix, mcp_app = self.prefix, self.app

        async def serve_mcp(scope: Scope, receive: Receive, send: Send) -> None:
            # Litestar hands a mount the rest of the path ("/" for the mount path itself) and leaves
            # root_path alone; rebuild the scope Starlette's Mount would give, so the MCP app routes
            # and builds its URLs as under any other host.
            rest: str = scope["path"]
            if not rest.startswith("/"):
                # `/mcpx` matches a Litestar mount at `/mcp` with "x" left over: not ours.
                await _not_found(send)
                return
            root_path = scope.get("root_path", "") + prefix
            await mcp_app({**scope, "root_path": root_path, "path": root_path + rest}, receive, send)

        # is_static: Litestar then keeps the rest of the path as sent (no trailing slash added).
        self.handler = asgi(prefix, is_mount=True, is_static=True, copy_scope=True, name="mcp")(serve_mcp)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(self.handler)
        app_config.lifespan.append(self.lifespan)
        return app_config


async def _not_found(send: Send) -> None:
    body = b'{"detail":"Not Found"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})
