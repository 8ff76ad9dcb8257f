"""Memory and start-up figures: an idle 2025 session's size, `import mcp_asgi` time, RSS after load.

    python bench/memory.py [--load-seconds 60] [--smoke]

- Idle session: 1,000 sessions opened through the app in-process (initialize + initialized, as a
  client does), measured with tracemalloc after a warm-up; bytes per session.
- Import: `python -c "import mcp_asgi"` minus `python -c "pass"`, the median of 7 runs each.
- RSS under load: one uvicorn worker's resident memory before, after `--load-seconds` of wrk at 64
  connections on the 2026-07-28 and 2025-session `tools/call`, and 5 s after the load stops.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.wrk import ACCEPT, INITIALIZE, Server, modern, session_call, wrk  # noqa: E402

SESSIONS = 1000


async def idle_session_bytes() -> float:
    import httpx

    from bench.apps import mcp

    app = mcp.http_app()
    transport = httpx.ASGITransport(app=app)
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}

    async def open_session(client: httpx.AsyncClient) -> None:
        response = await client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT})
        headers = {"accept": ACCEPT, "mcp-session-id": response.headers["mcp-session-id"]}
        await client.post("/mcp", json=initialized, headers={**headers, "mcp-protocol-version": "2025-11-25"})
        # In-process, a request never yields to the event loop, which then never drops the cancelled
        # body-read timers (a server's loop does so constantly): let it, or they count as session memory.
        await asyncio.sleep(0)

    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for _ in range(20):  # warm-up: lazy imports and caches are not a session's cost
            await open_session(client)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(SESSIONS):
            await open_session(client)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    return grown / SESSIONS


def import_ms() -> float:
    def median(code: str) -> float:
        runs = []
        for _ in range(7):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    return (median("import mcp_asgi") - median("pass")) * 1000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def rss_under_load(seconds: float) -> tuple[int, int, int]:
    server = Server("bench.apps:mcp_app", "h11", None)
    server.start()
    try:
        assert server.proc is not None
        loads = [modern("echo", {"text": "hello"}), session_call(server, "echo")]
        for body, headers in loads:  # warm every path once
            run_wrk(server, body, headers, 1)
        before = rss_kib(server.proc.pid)
        for body, headers in loads:
            run_wrk(server, body, headers, seconds / len(loads))
        during = rss_kib(server.proc.pid)
        time.sleep(5)
        after = rss_kib(server.proc.pid)
    finally:
        server.stop()
    return before, during, after


def run_wrk(server: Server, body: str, headers: dict[str, str], seconds: float) -> None:
    lines = [f"{k}: {v}" for k, v in {"Content-Type": "application/json", **headers}.items()]
    env = {"BENCH_BODY": body, "BENCH_HEADERS": "\n".join(lines)}
    if "__ID__" in body:
        env["BENCH_UNIQUE_ID"] = "1"
    result = wrk(server.url(), "post.lua", env, seconds, 64, None)
    if result["non2xx"] or result["socket_errors"]:
        raise RuntimeError(f"load failed: {result}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--smoke", action="store_true", help="a 2 s load instead of 60 s")
    args = parser.parse_args()
    if args.smoke:
        args.load_seconds = 2.0
    print(f"idle 2025 session: {asyncio.run(idle_session_bytes()):,.0f} bytes (target <= 1,024)")
    print(f"import mcp_asgi: {import_ms():.0f} ms (target <= 150)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run bench/setup")
    before, during, after = rss_under_load(args.load_seconds)
    change = (after - before) / before * 100
    print(
        f"RSS: {before:,} KiB before, {during:,} KiB after {args.load_seconds:g} s at 64 connections, "
        f"{after:,} KiB 5 s later ({change:+.1f}% of before; target within 10%)"
    )


if __name__ == "__main__":
    main()
