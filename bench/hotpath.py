"""Microseconds per request of one benchmark path, in process, optionally under cProfile.

    python bench/hotpath.py PATH [--calls 5000] [--rounds 5] [--profile] [--sort tottime]

PATH is one of `bare`, `async`, `structured`, `sync`, `sync-structured`, `inline`, `progress`,
`session`, `session-sse`. The apps are bench/apps.py's, called directly as ASGI apps (no socket,
no uvicorn): what is left is what mcp-asgi itself spends per request, which is what a change to
the request path moves. Same-run comparisons only; the machine's load shows in the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import apps  # noqa: E402

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
}
ACCEPT = b"application/json, text/event-stream"


def modern(name: str, arguments: dict[str, Any], **meta: Any) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    params = {"name": name, "arguments": arguments, "_meta": {**MODERN_META, **meta}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    headers = [
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", name.encode()),
    ]
    return body, headers


def scope(body: bytes, extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
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
            (b"content-length", str(len(body)).encode()),
            (b"accept", ACCEPT),
            *extra,
        ],
    }


async def one(app: Any, body: bytes, extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """One request; its status and headers, and the whole body."""
    sent = False
    started: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        else:
            chunks.append(message.get("body", b""))

    await app(scope(body, extra), receive, send)
    # A server yields to its loop between requests: what the request left scheduled runs (and counts).
    await asyncio.sleep(0)
    if started.get("status") != 200:
        raise RuntimeError(f"unexpected status {started.get('status')}: {b''.join(chunks)!r}")
    return {"headers": dict(started["headers"]), "body": b"".join(chunks)}


async def session_headers(app: Any) -> list[tuple[bytes, bytes]]:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    answer = await one(app, json.dumps(init).encode(), [])
    extra = [(b"mcp-session-id", answer["headers"][b"mcp-session-id"]), (b"mcp-protocol-version", b"2025-11-25")]
    initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
    try:
        await one(app, initialized, extra)
    except RuntimeError:
        pass  # 202
    return extra


async def prepare(path: str) -> tuple[Any, bytes, list[tuple[bytes, bytes]]]:
    if path == "bare":
        body, headers = modern("echo", {"text": "hello"})
        return apps.bare_app, body, headers
    modern_paths = {
        "async": ("echo", {"text": "hello"}, {}),
        "structured": ("add", {"a": 1, "b": 2}, {}),
        "sync": ("echo_sync", {"text": "hello"}, {}),
        "sync-structured": ("add_sync", {"a": 1, "b": 2}, {}),
        "inline": ("add_inline", {"a": 1, "b": 2}, {}),
        "progress": ("progress", {"text": "hello"}, {"progressToken": "p"}),
    }
    if path in modern_paths:
        name, arguments, meta = modern_paths[path]
        body, headers = modern(name, arguments, **meta)
        return apps.mcp_app, body, headers
    extra = await session_headers(apps.mcp_app)
    params: dict[str, Any] = {"name": "echo" if path == "session" else "progress", "arguments": {"text": "hello"}}
    if path == "session-sse":
        params["_meta"] = {"progressToken": "p"}
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}).encode()
    return apps.mcp_app, body, extra


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()
    app, body, extra = await prepare(args.path)
    for _ in range(300):  # warm-up: lazy start-up, caches
        await one(app, body, extra)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            await one(app, body, extra)
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats(args.sort).print_stats(args.lines)
        return
    rounds = []
    for _ in range(args.rounds):
        start = time.process_time()
        for _ in range(args.calls):
            await one(app, body, extra)
        rounds.append((time.process_time() - start) / args.calls * 1e6)
    print(f"{args.path}: median {statistics.median(rounds):.1f} us/request (min {min(rounds):.1f}), CPU time")


if __name__ == "__main__":
    asyncio.run(main())
