"""The apps the benchmark compares, each served by one uvicorn worker (`python -m uvicorn bench.apps:NAME`)."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_asgi import Context, MCPServer

mcp = MCPServer("bench")


@mcp.tool
async def echo(text: str) -> str:
    """Return the text."""
    return text


@mcp.tool
async def add(a: int, b: int) -> int:
    """Add two numbers (a structured result)."""
    return a + b


@mcp.tool
def echo_sync(text: str) -> str:
    """Return the text, from a plain function."""
    return text


@mcp.tool
def add_sync(a: int, b: int) -> int:
    """Add two numbers from a plain function (a structured result)."""
    return a + b


@mcp.tool(run_in_thread=False)
def add_inline(a: int, b: int) -> int:
    """Add two numbers from a plain function on the event loop (run_in_thread=False)."""
    return a + b


@mcp.tool
async def progress(text: str, ctx: Context) -> str:
    """Send one progress notification, then return the text (a streamed reply)."""
    await ctx.report_progress(1, 2)
    return text


# `MCP_ASGI_REDIS_URL` in the environment puts its sessions in Redis (the Redis rows).
mcp_app = mcp.http_app(path="/mcp")

many = MCPServer("bench-list")
for index in range(50):

    def repeat(text: str, count: int = 1) -> str:
        return text * count

    many.tool(name=f"tool_{index:02d}", description=f"Tool number {index}: repeat a text.")(repeat)
list_app = many.http_app(path="/mcp")

sse_app = mcp.http_app(transport="sse")


async def bare_endpoint(request: Request) -> Response:
    # The floor: decode the same JSON-RPC body, build the same result, encode it once.
    message = json.loads(await request.body())
    text = message["params"]["arguments"]["text"]
    result = {
        "jsonrpc": "2.0",
        "id": message["id"],
        "result": {
            "content": [{"type": "text", "text": text}],
            "resultType": "complete",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "bench", "version": "0.1.0"}},
        },
    }
    return Response(json.dumps(result, separators=(",", ":")).encode(), media_type="application/json")


bare_app = Starlette(routes=[Route("/mcp", bare_endpoint, methods=["POST"])])
