"""Requests per second of every MCP path, as ratios to a bare Starlette route, measured by wrk.

    python bench/wrk.py [--seconds 5] [--rounds 2] [--connections 16] [--smoke]

`bench/setup` installs what this needs (wrk, and uvicorn[standard] into `.venv-bench`); run it
with `.venv-bench/bin/python bench/wrk.py`. Each app runs in one uvicorn worker pinned to one
core, and wrk (the outside load generator) is pinned to another, so the generator's own cost
never hides the server's. Rounds are interleaved: every path is measured once per round, right
after the bare route it is compared with, and its figure is the median over the rounds of its
rate over that bare route's (the machine's speed drifts within a round), under the same HTTP
server (h11, and httptools + uvloop when installed).
`--smoke` runs everything once for a second, to prove the benchmark still works (CI).

Each ratio is followed by "(CPU x)": the bare route's server CPU time per request over the
path's, read from /proc. On a machine where other work shares the server's core the rates
are noisy; CPU per request is not, and it is what the ratio becomes on a quiet core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "lua"
ACCEPT = "application/json, text/event-stream"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
}
FLAVORS = {"h11": ["--loop", "asyncio", "--http", "h11"], "httptools": ["--loop", "uvloop", "--http", "httptools"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin(cpu: int | None) -> Callable[[], None] | None:
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


@dataclass
class Server:
    """One uvicorn worker serving `app`, pinned to the server's core."""

    app: str
    flavor: str
    cpu: int | None
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "uvicorn", self.app, "--port", str(self.port), *FLAVORS[self.flavor]]
        env = dict(os.environ, PYTHONPATH=str(ROOT), **self.env)
        self.proc = subprocess.Popen(
            [*args, "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env, preexec_fn=pin(self.cpu)
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.app} ({self.flavor}) did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def cpu_seconds(self) -> float:
        """CPU time the server process (all its threads) has used so far; 0 where /proc is missing."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()  # type: ignore[union-attr]
        except OSError:
            return 0.0
        # utime and stime, fields 14 and 15 of proc(5), counted after the ")" that ends the name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def url(self, path: str = "/mcp") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def post(url: str, message: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, json.dumps(message).encode(), {"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def modern(name: str, arguments: dict[str, Any], method: str = "tools/call", **meta: Any) -> tuple[str, dict]:
    params: dict[str, Any] = {"_meta": {**MODERN_META, **meta}}
    if method == "tools/call":
        params.update(name=name, arguments=arguments)
    headers = {"Accept": ACCEPT, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if method == "tools/call":
        headers["Mcp-Name"] = name
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}), headers


INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}


def new_session(server: Server) -> str:
    _, headers, _ = post(server.url(), INITIALIZE, {"Accept": ACCEPT})
    session = headers["mcp-session-id"]
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    post(server.url(), initialized, {"Accept": ACCEPT, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    return session


def session_call(server: Server, name: str, **meta: Any) -> tuple[str, dict]:
    params: dict[str, Any] = {"name": name, "arguments": {"text": "hello"}}
    if meta:
        params["_meta"] = meta
    headers = {"Accept": ACCEPT, "MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": new_session(server)}
    return json.dumps({"jsonrpc": "2.0", "id": "__ID__", "method": "tools/call", "params": params}), headers


def wrk(url: str, script: str, env: dict[str, str], seconds: float, connections: int, cpu: int | None) -> dict:
    """Run wrk once; what its `done()` printed."""
    duration = f"{max(1, round(seconds))}s"  # wrk takes whole seconds
    args = ["wrk", "-t", str(min(connections, 4)), "-c", str(connections), "-d", duration, "-s", str(LUA / script)]
    if script == "handshake.lua":  # one connection per thread: each thread's steps stay in order
        args[2] = str(connections)
    completed = subprocess.run(
        [*args, url], env=dict(os.environ, **env), capture_output=True, text=True, preexec_fn=pin(cpu), check=True
    )
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")


@dataclass
class Row:
    """One row of the table: how to load one server."""

    name: str
    server: str  # key into the run's servers
    prepare: Callable[[Server], tuple[str, dict[str, str]]] | None = None  # body, headers
    script: str = "post.lua"
    unit: str = "ratio"  # "ratio" to the bare route, or "per_s" (absolute)
    divide: int = 1  # requests per counted operation (a handshake is three)
    legacy: bool = False


PATHS = [
    Row("bare Starlette route (baseline)", "bare", lambda s: modern("echo", {"text": "hello"})),
    Row("2026-07-28 tools/call, async tool, text", "mcp", lambda s: modern("echo", {"text": "hello"})),
    Row("2026-07-28 tools/call, async tool, structured", "mcp", lambda s: modern("add", {"a": 1, "b": 2})),
    Row("2026-07-28 tools/call, sync tool, text", "mcp", lambda s: modern("echo_sync", {"text": "hello"})),
    Row("2026-07-28 tools/call, sync tool, structured", "mcp", lambda s: modern("add_sync", {"a": 1, "b": 2})),
    Row(
        "2026-07-28 tools/call, sync tool run_in_thread=False, structured",
        "mcp",
        lambda s: modern("add_inline", {"a": 1, "b": 2}),
    ),
    Row(
        "2026-07-28 tools/call, one progress notification (SSE)",
        "mcp",
        lambda s: modern("progress", {"text": "hello"}, progressToken="p"),
    ),
    Row("2026-07-28 tools/list, 50 tools", "list", lambda s: modern("", {}, method="tools/list")),
    Row("2025-11-25 session tools/call, JSON reply", "mcp", lambda s: session_call(s, "echo")),
    Row(
        "2025-11-25 session tools/call, SSE reply (progress)",
        "mcp",
        lambda s: session_call(s, "progress", progressToken="p"),
    ),
    Row("2025-11-25 session tools/call, JSON reply, Redis", "redis", lambda s: session_call(s, "echo")),
    Row("legacy HTTP+SSE tools/call (results on the stream)", "sse", legacy=True),
    Row(
        "initialize + initialized + DELETE (handshakes/s)",
        "mcp",
        lambda s: (json.dumps(INITIALIZE), {}),
        script="handshake.lua",
        unit="per_s",
        divide=3,
    ),
]


def measure(path: Row, server: Server, seconds: float, connections: int, load_cpu: int | None) -> float:
    """Operations per second of `path` on `server`."""
    if path.legacy:
        return measure_legacy(server, seconds, connections, load_cpu)
    assert path.prepare is not None
    body, headers = path.prepare(server)
    env = {
        "BENCH_BODY": body,
        "BENCH_HEADERS": "\n".join(f"{k}: {v}" for k, v in {"Content-Type": "application/json", **headers}.items()),
        "BENCH_PATH": "/mcp",
    }
    if "__ID__" in body:
        env["BENCH_UNIQUE_ID"] = "1"
    result = wrk(server.url(), path.script, env, seconds, connections, load_cpu)
    if result["non2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{path.name}: {result['non2xx']} non-2xx answers, {result['socket_errors']} socket errors")
    return result["requests"] / (result["duration_us"] / 1e6) / path.divide


def measure_legacy(server: Server, seconds: float, connections: int, load_cpu: int | None) -> float:
    """Calls per second over legacy HTTP+SSE, each waiting for its result on the stream (bench/sse_client.py).

    wrk cannot drive this transport: a POST is answered 202 before the call runs, so requests
    that never wait for their results only fill the server's queue. As many calls in flight as wrk
    has connections: with fewer, the rate measured the round trip, not the server (it sat idle).
    """
    client = [sys.executable, str(Path(__file__).with_name("sse_client.py")), str(server.port)]
    completed = subprocess.run(
        [*client, str(seconds), str(connections)],
        capture_output=True,
        text=True,
        preexec_fn=pin(load_cpu),
        check=True,
    )
    return float(completed.stdout.split()[-1])


@contextmanager
def redis_server(cpu: int | None) -> Iterator[str | None]:
    """A throwaway redis-server on the load generator's core (in production it is another host's)."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port, workdir = free_port(), tempfile.mkdtemp(prefix="mcp-asgi-bench-redis-")
    args = [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, preexec_fn=pin(cpu))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def flavors_available() -> list[str]:
    found = ["h11"]
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        print("uvicorn[standard] is not installed here: only h11 is measured (bench/setup installs it)")
    else:
        found.append("httptools")
    return found


def cores() -> tuple[int | None, int | None]:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        print("one core only: server and wrk are not pinned apart (figures are less trustworthy)")
        return None, None
    return available[0], available[1]


Figures = dict[str, dict[str, list[float]]]


def run(args: argparse.Namespace) -> tuple[Figures, Figures, Figures, Figures]:
    """Per path: operations per second, server CPU seconds per operation, and both as ratios to the bare
    route measured right before it (the machine's speed drifts within a round: a baseline taken a
    minute earlier moved the late rows' ratios by 0.2)."""
    server_cpu, load_cpu = cores()
    flavors = flavors_available()
    rates: Figures = {flavor: {p.name: [] for p in PATHS} for flavor in flavors}
    cpu: Figures = {flavor: {p.name: [] for p in PATHS} for flavor in flavors}
    rate_ratios: Figures = {flavor: {p.name: [] for p in PATHS} for flavor in flavors}
    cpu_ratios: Figures = {flavor: {p.name: [] for p in PATHS} for flavor in flavors}
    with redis_server(load_cpu) as redis_url:
        apps = {"bare": "bench.apps:bare_app", "mcp": "bench.apps:mcp_app", "list": "bench.apps:list_app"}
        apps["sse"] = "bench.apps:sse_app"
        servers: dict[tuple[str, str], Server] = {}
        for flavor in flavors:
            for key, app in apps.items():
                servers[flavor, key] = Server(app, flavor, server_cpu)
            if redis_url is not None:
                env = {"MCP_ASGI_REDIS_URL": redis_url, "MCP_ASGI_STATE_SECRET": "bench"}
                servers[flavor, "redis"] = Server("bench.apps:mcp_app", flavor, server_cpu, env)
        try:
            for server in servers.values():
                server.start()
            for round_ in range(args.rounds):
                for flavor in flavors:
                    baseline: tuple[float, float] | None = None
                    for path in PATHS:
                        server = servers.get((flavor, path.server))
                        if server is None or not selected(path, args.only):
                            continue
                        if path.unit == "ratio" and path is not PATHS[0]:
                            baseline = sample(PATHS[0], servers[flavor, "bare"], args, load_cpu, rates, cpu, flavor)
                        if round_ == 0 and not args.smoke:  # warm-up, not counted
                            measure(path, server, 1.0, args.connections, load_cpu)
                        rate, per_op = sample(path, server, args, load_cpu, rates, cpu, flavor)
                        print(f"  round {round_ + 1} {flavor:<9} {path.name:<56} {rate:9.0f}/s", flush=True)
                        if path.unit == "ratio" and path is not PATHS[0] and baseline is not None:
                            rate_ratios[flavor][path.name].append(rate / baseline[0])
                            if per_op > 0 and baseline[1] > 0:
                                cpu_ratios[flavor][path.name].append(baseline[1] / per_op)
        finally:
            for server in servers.values():
                server.stop()
    return rates, cpu, rate_ratios, cpu_ratios


def sample(
    path: Row, server: Server, args: argparse.Namespace, load_cpu: int | None, rates: Figures, cpu: Figures, flavor: str
) -> tuple[float, float]:
    """One measurement of `path`, recorded: its rate and its server CPU seconds per operation (0 if unknown)."""
    used = server.cpu_seconds()
    rate = measure(path, server, args.seconds, args.connections, load_cpu)
    used = server.cpu_seconds() - used
    rates[flavor][path.name].append(rate)
    per_op = used / (rate * max(1, round(args.seconds))) if used > 0 else 0.0
    if per_op:
        cpu[flavor][path.name].append(per_op)
    return rate, per_op


def selected(path: Row, only: list[str]) -> bool:
    """Whether `--only` keeps this row (the baseline always runs: every figure is a ratio to it)."""
    return path is PATHS[0] or not only or any(word.lower() in path.name.lower() for word in only)


def table(rates: Figures, cpu: Figures, rate_ratios: Figures, cpu_ratios: Figures, args: argparse.Namespace) -> str:
    flavors = list(rates)
    names = {"h11": "uvicorn (h11)", "httptools": "uvicorn[standard] (httptools, uvloop)"}
    lines = ["| path | " + " | ".join(names[f] for f in flavors) + " |", "|---|" + "---|" * len(flavors)]
    memory = "2025-11-25 session tools/call, JSON reply"
    for path in PATHS:
        if not selected(path, args.only):
            continue
        cells = []
        for flavor in flavors:
            measured = rates[flavor][path.name]
            if not measured:
                cells.append("n/a")
                continue
            rate = statistics.mean(measured)
            if path is PATHS[0]:
                cells.append(f"1.0 ({rate:,.0f}/s)")
            elif path.unit == "per_s":
                cells.append(f"{rate:,.0f}/s")
            elif path.server == "redis" and rates[flavor][memory]:
                in_memory = statistics.mean(rates[flavor][memory])
                ratio = statistics.median(rate_ratios[flavor][path.name])
                cells.append(f"{ratio:.2f} ({rate / in_memory:.2f}x in-memory)")
            else:
                cells.append(f"{statistics.median(rate_ratios[flavor][path.name]):.2f}")
            if path is not PATHS[0] and path.unit == "ratio" and cpu_ratios[flavor][path.name]:
                # The bare route's server CPU per request over this path's: what the ratio would be on a
                # server core nothing else uses (robust to other load on the machine, unlike the rate).
                cells[-1] += f" (CPU {statistics.median(cpu_ratios[flavor][path.name]):.2f})"
        lines.append(f"| {path.name} | " + " | ".join(cells) + " |")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {python}"
    lines.append("")
    lines.append(
        f"{args.rounds} interleaved round(s) of {args.seconds:g} s per path, each ratio the median over the rounds "
        f"of the path's rate over the bare route's measured right before it; {args.connections} connections "
        f"(legacy SSE: {args.connections} calls in flight, by bench/sse_client.py), "
        f"one uvicorn worker pinned to one core, wrk pinned to another; {machine}."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="each path once for 1 s, to prove the bench works")
    parser.add_argument("--only", action="append", default=[], help="rows whose name contains this (repeatable)")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rounds = 1, 1
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run bench/setup (or apt-get install wrk)")
    print(table(*run(args), args))


if __name__ == "__main__":
    main()
