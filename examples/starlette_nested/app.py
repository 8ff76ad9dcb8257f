"""A Starlette site with an MCP server two apps deep, at /outer/inner/mcp.

    python examples/starlette_nested/app.py       # PORT=9000 to move it

The site's own middleware tags every request (a response header and `request.state`), the
site's lifespan opens a visit counter, and the inner app that mounts the MCP server keeps its
settings in `app.state`. The tools read all three: middleware and lifespan data through
`ctx.request.state`, the mounting app's settings through `ctx.app.state`.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_asgi import Context, MCPServer, mount

MCP_PATH = "/outer/inner/mcp"


class RequestTag:
    """Pure ASGI middleware: gives each HTTP request a tag, in `request.state` and a response header."""

    def __init__(self, app: ASGIApp, prefix: str = "req") -> None:
        self.app = app
        self.prefix = prefix
        self.numbers = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tag = f"{self.prefix}-{next(self.numbers)}"
        # scope["state"] is this request's copy of the lifespan state; what is set here is
        # what `request.state.request_tag` reads further in, MCP tools included.
        scope.setdefault("state", {})["request_tag"] = tag

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-tag", tag.encode())]
            await send(message)

        await self.app(scope, receive, send_tagged)


mcp = MCPServer("Greeter", version="1.0.0", instructions="Greets people on behalf of the site.")


@mcp.tool
def greet(name: str, ctx: Context) -> dict:
    """Greet someone the way the site likes to."""
    visits: Counter[str] = ctx.request.state.visits
    visits[name] += 1
    return {
        "greeting": f"{ctx.app.state.greeting}, {name}!",
        "visit": visits[name],
        "request_tag": ctx.request.state.request_tag,
    }


@mcp.tool
def site_settings(ctx: Context) -> dict:
    """The settings of the app that mounts this server."""
    return {"greeting": ctx.app.state.greeting, "mounted_by": ctx.app.state.name}


async def home(request: Request) -> JSONResponse:
    return JSONResponse({"mcp": str(request.url.replace(path=MCP_PATH))})


@asynccontextmanager
async def lifespan(app: Starlette):
    # A stand-in for a connection pool: one per process, reachable from every request.
    yield {"visits": Counter()}


inner = Starlette()
inner.state.greeting = "Hello"
inner.state.name = "inner"
mount(inner, "/mcp", mcp)

outer = Starlette()
mount(outer, "/inner", inner)

app = Starlette(routes=[Route("/", home)], middleware=[Middleware(RequestTag)], lifespan=lifespan)
# Each mount() wraps its host's lifespan, so starting `app` starts the MCP server too.
mount(app, "/outer", outer)


if __name__ == "__main__":
    host = "127.0.0.1"
    port = int(os.environ.get("PORT", "8000"))
    print(f"MCP endpoint: http://{host}:{port}{MCP_PATH}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("LOG_LEVEL", "info"))
