"""A deployment in miniature: several real uvicorn processes sharing one real Redis, and clients
whose every request lands on the next process in turn (round robin, no stickiness).

`Workers` starts N `python -m uvicorn module:app --port P` processes (or one
`uvicorn --workers N` master) with `MCP_ASGI_REDIS_URL` and `MCP_ASGI_STATE_SECRET` in
their environment. `alternating_httpx(ports)` and `alternating_httpx2(ports)` build HTTP
clients (httpx for raw requests, httpx2 for the official SDK client) that send request k to
`ports[k % len(ports)]` and never keep a connection alive, so nothing pins a client to
the worker it met first, the way a round-robin load balancer behaves.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import httpx2

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.fixtures.multiworker_app:app"
SECRET = "multiworker-tests-shared-secret-0123456789"


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a worker: the shared Redis and the shared state secret, nothing else changed."""
    env = dict(os.environ, MCP_ASGI_REDIS_URL=redis_url, MCP_ASGI_STATE_SECRET=SECRET, PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on `port`; fail with the process's output if it died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None:
                raise AssertionError(f"uvicorn exited ({process.returncode}) before listening on {port}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"uvicorn did not listen on {port} within {timeout} s") from None
            time.sleep(0.05)


class Workers:
    """N uvicorn processes of one app on N ports (or one master with `--workers N` on one port)."""

    def __init__(
        self,
        redis_url: str,
        *,
        count: int = 2,
        app: str = APP,
        app_dir: Path | None = None,
        master: bool = False,
        **env: str,
    ) -> None:
        self.redis_url = redis_url
        self.app = app
        self.app_dir = app_dir
        self.master = master
        self.count = count
        self.env = worker_env(redis_url, **env)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []
        self.logs: list[Path] = []

    def _spawn(self, port: int, *extra: str) -> subprocess.Popen[bytes]:
        log = Path(f"/tmp/mcp-asgi-mw-{os.getpid()}-{port}.log")
        self.logs.append(log)
        command = [sys.executable, "-m", "uvicorn", self.app, "--port", str(port), "--log-level", "warning"]
        if self.app_dir is not None:
            command += ["--app-dir", str(self.app_dir)]
        with log.open("wb") as out:
            return subprocess.Popen(
                [*command, "--no-access-log", *extra], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def start(self) -> Workers:
        if self.master:
            port = free_port()
            self.ports.append(port)
            self.processes.append(self._spawn(port, "--workers", str(self.count)))
        else:
            for _ in range(self.count):
                port = free_port()
                self.ports.append(port)
                self.processes.append(self._spawn(port))
        for port, process in zip(self.ports, self.processes, strict=True):
            wait_listening(port, process)
        return self

    def url(self, index: int = 0, path: str = "/mcp") -> str:
        return f"http://127.0.0.1:{self.ports[index]}{path}"

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for log in self.logs if log.exists())

    def kill(self, index: int) -> None:
        """SIGKILL worker `index`: no shutdown, no goodbye, as when the OOM killer strikes."""
        process = self.processes[index]
        process.send_signal(signal.SIGKILL)
        process.wait(5)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for log in self.logs:
            log.unlink(missing_ok=True)

    def __enter__(self) -> Workers:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Rotation:
    """The next port for each request, and the ports used so far (for asserting the spread)."""

    def __init__(self, ports: Sequence[int]) -> None:
        self._ports = itertools.cycle(list(ports))
        self.used: list[int] = []

    def next(self) -> int:
        port = next(self._ports)
        self.used.append(port)
        return port


class AlternatingTransport(httpx.AsyncBaseTransport):
    """httpx transport sending each request to the next port in turn, one fresh connection per request."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.rotation = _Rotation(ports)
        self._inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(port=self.rotation.next())
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class AlternatingTransport2(httpx2.AsyncBaseTransport):
    """The same for httpx2, the HTTP library of the official MCP SDK client."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.rotation = _Rotation(ports)
        self._inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(port=self.rotation.next())
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def alternating_httpx(ports: Sequence[int], *, timeout: float = 10.0) -> httpx.AsyncClient:
    """A raw httpx client whose request k goes to `ports[k % len(ports)]` (base URL: the first port)."""
    return httpx.AsyncClient(
        transport=AlternatingTransport(ports), base_url=f"http://127.0.0.1:{ports[0]}", timeout=timeout
    )


def alternating_httpx2(
    ports: Sequence[int], *, timeout: float = 10.0, read: float = 30.0, used: list[int] | None = None
) -> httpx2.AsyncClient:
    """An httpx2 client for `mcp.client`'s transports, alternating ports like `alternating_httpx`.

    `used`, if given, collects the port of every request sent.
    """
    transport = AlternatingTransport2(ports)
    if used is not None:
        transport.rotation.used = used
    return httpx2.AsyncClient(transport=transport, timeout=httpx2.Timeout(timeout, read=read))


def sdk_client(ports: Sequence[int], mode: str, path: str = "/mcp", **options: Any) -> Any:
    """The official `mcp.Client` over Streamable HTTP, its requests spread over `ports` in turn."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = alternating_httpx2(ports)
    transport = streamable_http_client(f"http://127.0.0.1:{ports[0]}{path}", http_client=http)
    return Client(transport, mode=mode, **options)


def sdk_sse_client(
    ports: Sequence[int], path: str = "/legacy/sse", *, used: list[int] | None = None, **options: Any
) -> Any:
    """The official `mcp.Client` over legacy HTTP+SSE: the stream on `ports[0]`, each POST on the next port.

    `used`, if given, collects the port of every request sent.
    """
    from mcp import Client
    from mcp.client.sse import sse_client

    def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
        client = alternating_httpx2(ports, used=used)
        if headers:
            client.headers.update(headers)
        return client

    transport = sse_client(f"http://127.0.0.1:{ports[0]}{path}", httpx_client_factory=factory)
    return Client(transport, mode="legacy", **options)
