"""Microseconds per 2026-07-28 `tools/call`, in process: the ASGI app called directly, no network.

    python bench/per_call.py [--calls 20000] [--rounds 7] [--variant plain|telemetry|sdk|middleware]

Measures what mcp-asgi adds per request (no socket, no uvicorn), so a change to the request
path shows up clearly; run it before and after the change, on an idle machine, and compare
the medians. `plain` has no MCP middleware (`telemetry=False`); `telemetry` is the default
with opentelemetry-api installed and no SDK; `sdk` records every span (a no-op exporter);
`middleware` adds one pass-through `on_request` and `on_call_tool`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from mcp_asgi import MCPServer

META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
}
BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hello"}, "_meta": META},
    }
).encode()
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/mcp",
    "raw_path": b"/mcp",
    "root_path": "",
    "query_string": b"",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"accept", b"application/json, text/event-stream"),
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", b"echo"),
    ],
}


class PassThrough:
    async def on_request(self, request: Any, call_next: Any) -> dict[str, Any]:
        return await call_next(request)

    async def on_call_tool(self, request: Any, call_next: Any) -> dict[str, Any]:
        return await call_next(request)


def build(variant: str) -> Any:
    if variant == "sdk":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)
    options: dict[str, Any] = {}
    if variant in ("plain", "middleware"):
        options["telemetry"] = False
    if variant == "middleware":
        options["middleware"] = [PassThrough()]
    try:
        mcp = MCPServer("bench", **options)
    except TypeError:  # a version from before MCP middleware
        mcp = MCPServer("bench")

    @mcp.tool
    async def echo(text: str) -> str:
        """Return the text."""
        return text

    return mcp.http_app(path="/mcp")


async def one(app: Any) -> None:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(SCOPE), receive, send)
    if status != 200:
        raise RuntimeError(f"unexpected status {status}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--variant", default="plain", choices=["plain", "telemetry", "sdk", "middleware"])
    args = parser.parse_args()
    app = build(args.variant)
    for _ in range(500):  # warm up: lifespan started lazily, caches filled
        await one(app)
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.calls):
            await one(app)
        rounds.append((time.perf_counter() - start) / args.calls * 1e6)
    median = statistics.median(rounds)
    print(f"{args.variant}: median {median:.2f} us/call (min {min(rounds):.2f}, rounds {args.rounds})")


if __name__ == "__main__":
    asyncio.run(main())
