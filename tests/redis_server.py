"""A real redis-server for the tests: started on a free loopback port, without persistence.

`redis_url` is one server shared by the whole run (tests keep apart by key prefix);
`redis_server` is a server of the test's own, which it may `stop()` and `start()` again
on the same port to play an outage. A server that cannot start FAILS the test: the
Redis tests never skip (scripts/bootstrap installs redis-server).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, data in memory only."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="mcp-asgi-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING; RuntimeError (with its log) if it does not."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run scripts/bootstrap (it installs the Debian package)")
        log = self._dir / "redis.log"
        # No RDB snapshots, no AOF: nothing of a test run reaches the disk.
        command = [binary, "--save", "", "--appendonly", "no", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self._dir), "--logfile", str(log), "--daemonize", "no"]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{output}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (its data is gone); the port stays this server's for a later `start()`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers; `resume()` thaws it."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a redis-server shared by every test of the run; use a key prefix of your own."""
    server = RedisServer()
    try:
        server.start()
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, running; the test may stop and restart it."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
