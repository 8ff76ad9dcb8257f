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
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import hotpath  # noqa: E402
from bench.hotpath import modern  # noqa: E402
from mcp_asgi import MCPServer  # noqa: E402

# The request and the in-process ASGI driver are hotpath.py's: one way to drive an app without a socket.
BODY, HEADERS = modern("echo", {"text": "hello"})


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
    await hotpath.one(app, BODY, HEADERS)


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
