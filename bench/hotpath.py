"""Microseconds of CPU per request of benchmark paths, in process, optionally under cProfile.

    python bench/hotpath.py PATH [PATH ...] [--server httptools] [--loop uvloop] [--calls 2000] [--rounds 7]
    python bench/hotpath.py PATH --profile [--sort tottime]

PATH is one of `bare`, `async`, `structured`, `sync`, `sync-structured`, `inline`, `progress`,
`session`, `session-sse`, `legacy`. The apps are bench/apps.py's, driven without a socket. `--server direct`
(the default) calls them as ASGI apps in one task; `--server h11` or `httptools` feeds raw HTTP
bytes to uvicorn's own protocol class over an in-memory transport, so every request gets its own
task and pays uvicorn's parsing and writing, as under `bench/wrk.py`, but without the kernel.

The paths are measured in interleaved rounds, `bare` always among them, and each is printed with
its ratio to `bare` in the same run: the machine's speed drifts by far more than a change's
effect, and a ratio from one process survives that drift.

`legacy` (HTTP+SSE, 2024-11-05; `--server h11|httptools` only) holds one `GET /sse` connection
open; each call is a POST of `tools/call` on another connection, complete once its 202 and its
result on the stream have both arrived, as `bench/sse_client.py` does over sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import json
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
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


class _Transport(asyncio.Transport):
    """What uvicorn writes to, in memory: completes `waiter` when a whole response is there."""

    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        length = head.find(b"content-length: ")
        if length >= 0:
            complete = len(self.buffer) >= end + 4 + int(head[length + 16 :].split(b"\r\n")[0])
        else:
            complete = self.buffer.endswith(b"0\r\n\r\n")
        if complete:
            self.waiter.set_result(bytes(self.buffer))
            self.buffer.clear()

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class UvicornDriver:
    """One keep-alive connection into uvicorn's protocol class (`h11` or `httptools`), no socket."""

    def __init__(
        self,
        app: Any,
        http: str,
        body: bytes,
        extra: list[tuple[bytes, bytes]],
        *,
        target: str = "/mcp",
        expect: bytes = b"HTTP/1.1 200",
        transport: asyncio.Transport | None = None,
    ) -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        config = Config(app=app, http=http, lifespan="off", log_level="warning", access_log=False)
        config.load()
        self.loop = asyncio.get_running_loop()
        self.protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=ServerState(), app_state={}, _loop=self.loop
        )
        self.transport: Any = transport if transport is not None else _Transport()
        self.protocol.connection_made(self.transport)
        self.expect = expect
        headers = scope(body, extra)["headers"]
        request_line = f"POST {target} HTTP/1.1\r\n".encode()
        self.raw = request_line + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body

    async def one(self) -> None:
        self.transport.waiter = self.loop.create_future()
        self.protocol.data_received(self.raw)
        answer = await self.transport.waiter
        if not answer.startswith(self.expect):
            raise RuntimeError(f"unexpected answer: {answer[:300]!r}")
        await asyncio.sleep(0)


class _StreamTransport(_Transport):
    """What uvicorn writes a `GET /sse` stream to: the endpoint event, then results, counted as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.results = 0
        self.wanted = 0
        self.result_waiter: asyncio.Future[None] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if not self.endpoint.done():
            self.buffer += data
            start = self.buffer.find(b"event: endpoint\ndata: ")
            end = self.buffer.find(b"\n\n", start)
            if start >= 0 and end >= 0:
                self.endpoint.set_result(bytes(self.buffer[start + 22 : end]).decode())
                self.buffer.clear()
            return
        # uvicorn writes each ASGI body message as one chunk: one SSE event per write.
        if b'"error"' in data or b'"isError":true' in data:
            raise RuntimeError(f"unexpected event on the stream: {data[:300]!r}")
        self.results += data.count(b"event: message\n")
        if self.result_waiter is not None and self.results >= self.wanted and not self.result_waiter.done():
            self.result_waiter.set_result(None)


async def legacy_call(http: str, connections: int) -> Callable[[], Awaitable[Any]]:
    """Open the stream, initialize, and return one measured call: POSTs of `tools/call`, 202, results on the stream."""
    loop = asyncio.get_running_loop()
    stream = _StreamTransport()
    get = UvicornDriver(apps.sse_app, http, b"", [], transport=stream)
    get.protocol.data_received(b"GET /sse HTTP/1.1\r\nhost: 127.0.0.1:8000\r\naccept: text/event-stream\r\n\r\n")
    target = await asyncio.wait_for(stream.endpoint, 5)

    def driver(message: dict[str, Any]) -> UvicornDriver:
        body = json.dumps(message).encode()
        return UvicornDriver(apps.sse_app, http, body, [], target=target, expect=b"HTTP/1.1 202")

    async def posted(posts: list[UvicornDriver]) -> None:
        # Results are counted from before the POSTs: one may arrive before its own 202.
        stream.wanted = stream.results + len(posts)
        await (posts[0].one() if len(posts) == 1 else asyncio.gather(*(post.one() for post in posts)))
        if stream.results < stream.wanted:
            stream.result_waiter = loop.create_future()
            await stream.result_waiter

    init = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {"protocolVersion": "2024-11-05"}}
    await posted([driver(init)])
    await driver({"jsonrpc": "2.0", "method": "notifications/initialized"}).one()
    echo = {"name": "echo", "arguments": {"text": "x"}}
    posts = [driver({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": echo}) for n in range(connections)]

    async def call() -> None:
        await posted(posts)

    async def close() -> None:
        # The client leaves: the stream ends as under a server, instead of being cancelled at exit.
        get.protocol.connection_lost(None)
        for _ in range(10):
            await asyncio.sleep(0)

    call.close = close  # type: ignore[attr-defined]
    return call


def _together(drivers: list[UvicornDriver]) -> Callable[[], Awaitable[Any]]:
    """One request on each connection at once: what the app does with requests that overlap."""

    async def call() -> None:
        await asyncio.gather(*(driver.one() for driver in drivers))

    return call


async def main(args: argparse.Namespace) -> None:
    paths = list(dict.fromkeys(["bare", *args.paths])) if not args.profile else args.paths
    calls: dict[str, Callable[[], Awaitable[Any]]] = {}
    for path in paths:
        if path == "legacy":
            if args.server == "direct":
                raise SystemExit("the legacy path needs --server h11 or --server httptools")
            calls[path] = await legacy_call(args.server, args.connections)
            continue
        app, body, extra = await prepare(path)
        if args.server == "direct":
            calls[path] = functools.partial(one, app, body, extra)
        else:
            drivers = [UvicornDriver(app, args.server, body, extra) for _ in range(args.connections)]
            calls[path] = drivers[0].one if len(drivers) == 1 else _together(drivers)
    try:
        await measure(args, paths, calls)
    finally:
        for call in calls.values():
            close = getattr(call, "close", None)
            if close is not None:
                await close()


async def measure(args: argparse.Namespace, paths: list[str], calls: dict[str, Callable[[], Awaitable[Any]]]) -> None:
    for call in calls.values():
        for _ in range(300):  # warm-up: lazy start-up, caches, the interpreter's specialisation
            await call()
    if args.profile:
        call = calls[paths[0]]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.calls):
            await call()
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats(args.sort).print_stats(args.lines)
        return
    rounds: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(args.rounds):
        for path, call in calls.items():
            start = time.process_time()
            for _ in range(args.calls // args.connections):
                await call()
            rounds[path].append((time.process_time() - start) / args.calls * 1e6)
    floor = statistics.median(rounds["bare"])
    print(
        f"server={args.server} loop={args.loop} connections={args.connections}, "
        f"{args.rounds} interleaved rounds of {args.calls} calls"
    )
    for path, figures in rounds.items():
        median = statistics.median(figures)
        print(f"{path:16} median {median:7.1f} us/request (min {min(figures):.1f}), {floor / median:.2f} of bare")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--server", choices=["direct", "h11", "httptools"], default="direct")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--connections", type=int, default=1, help="with --server: this many connections, a request on each at once"
    )
    parser.add_argument("--profile", action="store_true", help="the first PATH alone, under cProfile")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--lines", type=int, default=40)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
