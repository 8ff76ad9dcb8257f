"""A Litestar app with an MCP server at /mcp beside its own JSON routes.

    uvicorn examples.litestar_app.app:app       # from the repository root

The shop's stock lives in Litestar's `app.state`; `/api/stock` serves it and the MCP tools read
and change it through `ctx.app.state`. The app's middleware (a response header) wraps the MCP
endpoint like every other route, and the MCP server's lifespan runs inside Litestar's.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.middleware import AbstractMiddleware
from litestar.types import Message, Receive, Scope, Send

from mcp_asgi import Context, MCPServer, ToolError
from mcp_asgi.litestar import MCPPlugin


@asynccontextmanager
async def lifespan(server: MCPServer) -> AsyncIterator[dict[str, Any]]:
    print("shop: MCP lifespan started", file=sys.stderr, flush=True)
    try:
        yield {"ready": True}
    finally:
        print("shop: MCP lifespan stopped", file=sys.stderr, flush=True)


mcp = MCPServer("Shop", version="1.0.0", instructions="Answers questions about the shop's stock.", lifespan=lifespan)


@mcp.tool
def host_info(ctx: Context) -> dict:
    """What serves this MCP server: the framework, its version, and the shop's name from app.state."""
    return {
        "framework": "litestar",
        "version": version("litestar"),
        "shop": ctx.app.state.shop,
        "lifespan_running": ctx.lifespan_context.get("ready", False),
    }


@mcp.tool
def stock(ctx: Context) -> dict[str, int]:
    """How many of each item the shop holds."""
    return dict(ctx.app.state.stock)


@mcp.tool
def sell(item: str, quantity: int, ctx: Context) -> dict:
    """Sell `quantity` of `item`; refuses what the shop does not have."""
    held = ctx.app.state.stock
    if held.get(item, 0) < quantity:
        raise ToolError(f"Only {held.get(item, 0)} {item} left")
    held[item] -= quantity
    return {"item": item, "left": held[item]}


@get("/api/stock")
async def stock_route(request: Request) -> dict[str, Any]:
    return {"shop": request.app.state.shop, "stock": request.app.state.stock}


class ServedBy(AbstractMiddleware):
    """The app's own middleware: tags every response, MCP's included."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-served-by", b"litestar-example")]
            await send(message)

        await self.app(scope, receive, tagged)


app = Litestar(
    route_handlers=[stock_route],
    middleware=[ServedBy],
    plugins=[MCPPlugin(mcp, "/mcp")],
    state=State({"shop": "Corner Shop", "stock": {"apples": 12, "pears": 5}}),
)
