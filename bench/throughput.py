"""Requests per second of `tools/call` on mcp-asgi against a bare Starlette route, in the same run.

    python bench/throughput.py [--seconds 5] [--connections 32] [--no-redis]

Each app runs in its own uvicorn process (one worker); the load comes from a
small keep-alive HTTP/1.1 client in this process, so the two share the
machine's cores the same way for every app. Compare the ratios, not the
absolute numbers. The 2025-11-25 session call is measured twice: with the
in-memory backend, and with the Redis backend (`MCP_ASGI_REDIS_URL`) on a
redis-server this script starts on a free loopback port, without persistence.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(port: int, body: bytes, headers: dict[str, str]) -> bytes:
    lines = ["POST /mcp HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def modern_call(port: int) -> bytes:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hello"}, "_meta": MODERN_META},
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "echo",
    }
    return http_request(port, body, headers)


def legacy_call(port: int, session_id: str) -> bytes:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hello"}}}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
        "Mcp-Session-Id": session_id,
    }
    return http_request(port, body, headers)


def header_value(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(header_value(head, b"content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return status, head, body


async def one_shot(port: int, raw: bytes) -> tuple[int, bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    response = await read_response(reader)
    writer.close()
    return response


async def load(port: int, raw: bytes, seconds: float, connections: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            writer.write(raw)
            status, _, _ = await read_response(reader)
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")
            done += 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.perf_counter() - start)


def start(app: str, port: int, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{app} did not start")


def start_redis() -> tuple[subprocess.Popen, str, str]:
    """A throwaway redis-server on a free loopback port, data in memory only; (process, URL, its directory)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/bootstrap installs it; or use --no-redis)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="mcp-asgi-bench-redis-")
    command = [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen([*command, "--dir", workdir], stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0", workdir
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def measure(
    name: str, app: str, make_request, seconds: float, connections: int, env: dict[str, str] | None = None
) -> float:
    port = free_port()
    proc = start(app, port, env)
    try:
        raw = await make_request(port)
        status, _, body = await one_shot(port, raw)
        assert status == 200, body
        await load(port, raw, 1.0, connections)  # warm-up
        rate = await load(port, raw, seconds, connections)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"{name:<42} {rate:10.0f} req/s")
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis backend run")
    args = parser.parse_args()

    async def modern(port: int) -> bytes:
        return modern_call(port)

    async def legacy(port: int) -> bytes:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}},
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        _, head, _ = await one_shot(port, http_request(port, json.dumps(init).encode(), headers))
        return legacy_call(port, (header_value(head, b"mcp-session-id") or b"").decode())

    seconds, connections = args.seconds, args.connections
    print(f"tools/call, {connections} keep-alive connections, {seconds:.0f} s per app, one uvicorn worker")
    bare = await measure("bare Starlette route (baseline)", "bench.apps:bare_app", modern, seconds, connections)
    stateless = await measure("mcp-asgi 2026-07-28 (stateless)", "bench.apps:mcp_app", modern, seconds, connections)
    session = await measure("mcp-asgi 2025-11-25 (session)", "bench.apps:mcp_app", legacy, seconds, connections)
    print(f"ratio 2026-07-28 / baseline: {stateless / bare:.2f}x   (target >= 0.70x)")
    print(f"ratio 2025-11-25 / baseline: {session / bare:.2f}x")
    if not args.no_redis:
        await measure_redis(legacy, session, seconds, connections)


async def measure_redis(legacy: Any, in_memory: float, seconds: float, connections: int) -> None:
    """The same 2025-11-25 session call with the sessions in Redis, against the in-memory rate."""
    redis, url, workdir = start_redis()
    try:
        env = {"MCP_ASGI_REDIS_URL": url, "MCP_ASGI_STATE_SECRET": "bench-shared-secret"}
        shared = await measure(
            "mcp-asgi 2025-11-25 (session, Redis)", "bench.apps:mcp_app", legacy, seconds, connections, env
        )
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"ratio 2025-11-25 Redis / in-memory: {shared / in_memory:.2f}x   (target >= 0.60x)")
    # redis-py parses replies in Python unless hiredis is installed; here that moved the ratio from ~0.4x to ~0.6x.
    parser = "hiredis" if importlib.util.find_spec("hiredis") else "pure Python (pip install hiredis: faster)"
    print(f"redis-py reply parser: {parser}")


if __name__ == "__main__":
    asyncio.run(main())
