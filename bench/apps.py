"""The apps the throughput benchmark compares, each served by one uvicorn worker."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mcp_asgi import MCPServer

mcp = MCPServer("bench")


@mcp.tool
async def echo(text: str) -> str:
    """Return the text."""
    return text


mcp_app = mcp.http_app(path="/mcp")


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
