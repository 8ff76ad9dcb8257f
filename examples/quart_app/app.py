"""A Quart app with an MCP server at /mcp beside its own JSON routes.

    uvicorn examples.quart_app.app:app       # from the repository root

The station's settings live in Quart's `app.config`; `/api/station` serves them and the MCP
tools read them through `ctx.app.config`. ASGI middleware put on `app.asgi_app` after
`mount_quart` wraps the MCP endpoint too, and the MCP server's lifespan runs in Quart's
`while_serving`.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from quart import Quart, current_app
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_asgi import Context, MCPServer, ToolError
from mcp_asgi.quart import mount_quart


@asynccontextmanager
async def lifespan(server: MCPServer) -> AsyncIterator[dict[str, Any]]:
    print("station: MCP lifespan started", file=sys.stderr, flush=True)
    try:
        yield {"ready": True}
    finally:
        print("station: MCP lifespan stopped", file=sys.stderr, flush=True)


mcp = MCPServer("Station", version="1.0.0", instructions="Describes a weather station.", lifespan=lifespan)

# What the tools may read from the app's config (not SECRET_KEY and the like).
PUBLIC_SETTINGS = ("STATION_NAME", "STATION_UNITS", "STATION_SENSORS")


@mcp.tool
def host_info(ctx: Context) -> dict:
    """What serves this MCP server: the framework, its version, and the station's name from app.config."""
    return {
        "framework": "quart",
        "version": version("quart"),
        "station": ctx.app.config["STATION_NAME"],
        "lifespan_running": ctx.lifespan_context.get("ready", False),
    }


@mcp.tool
def setting(name: str, ctx: Context) -> str | list[str]:
    """One of the station's public settings (STATION_NAME, STATION_UNITS, STATION_SENSORS)."""
    if name not in PUBLIC_SETTINGS:
        raise ToolError(f"Unknown setting {name!r}; try one of {', '.join(PUBLIC_SETTINGS)}")
    return ctx.app.config[name]


app = Quart(__name__)
app.config.from_mapping(STATION_NAME="Ostend Pier", STATION_UNITS="metric", STATION_SENSORS=["wind", "temperature"])


@app.get("/api/station")
async def station() -> dict[str, Any]:
    return {name.lower(): current_app.config[name] for name in PUBLIC_SETTINGS}


mount_quart(app, "/mcp", mcp)


class ServedBy:
    """ASGI middleware around the whole app (MCP included): tags every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-served-by", b"quart-example")]
            await send(message)

        await self.app(scope, receive, tagged)


app.asgi_app = ServedBy(app.asgi_app)  # type: ignore[method-assign]
