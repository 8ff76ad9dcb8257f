"""Memory and start-up figures: an idle 2025 session's size, `import mcp_asgi` time, RSS after load.

    python bench/memory.py [--load-seconds 60] [--smoke]

- Idle session: 1,000 sessions opened through the app in-process (initialize + initialized, as a
  client does), measured with tracemalloc after a warm-up; bytes per session.
- Import: `python -c "import mcp_asgi"` and, beside it, the dependencies alone (the floor no code of
  ours can go below: `import starlette.applications, starlette.responses, pydantic, anyio`), each
  minus `python -c "pass"`; wall and CPU time, medians of interleaved rounds, with the bytecode cache
  written first (as `pip install` does), whatever PYTHONDONTWRITEBYTECODE says. Times follow the
  machine's load; when valgrind is installed, instruction counts (callgrind) do not, and say what
  share is ours.
- RSS under load: one uvicorn worker's resident memory before, after `--load-seconds` of wrk at 64
  connections on the 2026-07-28 and 2025-session `tools/call`, and 5 s after the load stops.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import resource
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
# What `import mcp_asgi` needs from its dependencies: the floor of its import time.
DEPENDENCIES = "import starlette.applications, starlette.responses, pydantic, anyio"
IMPORTS = {"pass": "pass", "dependencies": DEPENDENCIES, "mcp_asgi": "import mcp_asgi"}


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


def _import_env() -> dict[str, str]:
    # Users import from bytecode that pip wrote at install; compiling our modules on every run
    # (PYTHONDONTWRITEBYTECODE=1) would more than double our share.
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def import_times(rounds: int) -> dict[str, tuple[float, float]]:
    """Wall and CPU ms of each of `IMPORTS` above `python -c pass`: medians of interleaved rounds."""
    env = _import_env()

    def run(code: str) -> tuple[float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return wall * 1000, cpu * 1000

    for code in IMPORTS.values():  # writes the bytecode cache, warms the file cache
        run(code)
    # Interleaved, so that a change of load in the middle hits every figure alike.
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in IMPORTS}
    for _ in range(rounds):
        for name, code in IMPORTS.items():
            runs[name].append(run(code))
    medians = {
        name: (statistics.median(wall for wall, _ in r), statistics.median(cpu for _, cpu in r))
        for name, r in runs.items()
    }
    base_wall, base_cpu = medians["pass"]
    return {name: (wall - base_wall, cpu - base_cpu) for name, (wall, cpu) in medians.items() if name != "pass"}


def import_instructions() -> dict[str, int] | None:
    """Instructions (valgrind's callgrind) of each of `IMPORTS` above `python -c pass`; None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    env = {**_import_env(), "PYTHONHASHSEED": "0"}
    subprocess.run([sys.executable, "-c", "import mcp_asgi"], check=True, env=env)  # bytecode cache
    counts = {}
    for name, code in IMPORTS.items():
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", code]
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        found = re.search(r"Collected : (\d+)", result.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from callgrind: {result.stderr[-500:]}")
        counts[name] = int(found.group(1))
    return {name: count - counts["pass"] for name, count in counts.items() if name != "pass"}


def print_import_figures(rounds: int, instructions: bool) -> None:
    """Print the import figures: ours next to the dependency floor, in time and (with valgrind) instructions."""
    times = import_times(rounds)
    (wall, cpu), (floor_wall, floor_cpu) = times["mcp_asgi"], times["dependencies"]
    print(
        f"import mcp_asgi: {wall:.0f} ms wall, {cpu:.0f} ms CPU above `python -c pass` (target <= 150); "
        f"its dependencies alone: {floor_wall:.0f} ms wall, {floor_cpu:.0f} ms CPU ({rounds} interleaved rounds)"
    )
    counts = import_instructions() if instructions else None
    if counts is not None:
        ours, floor = counts["mcp_asgi"] - counts["dependencies"], counts["dependencies"]
        print(
            f"import mcp_asgi: {counts['mcp_asgi'] / 1e6:.0f}M instructions above `python -c pass`, "
            f"its dependencies alone {floor / 1e6:.0f}M: ours {ours / 1e6:.0f}M ({ours / floor:.0%} of the floor)"
        )


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
    print_import_figures(rounds=3 if args.smoke else 11, instructions=not args.smoke)
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
