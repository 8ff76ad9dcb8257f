"""Idle sessions disappear in the background while the server's lifespan runs, however it was started."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

import anyio
import httpx

from mcp_asgi import InMemorySessionStore, MCPServer
from tests.conftest import serve
from tests.http_helpers import ACCEPT


class CountingStore(InMemorySessionStore):
    """An in-memory store that counts its sweeps, and can fail the first one."""

    def __init__(self, *, fail_first: bool = False, **options: float) -> None:
        super().__init__(**options)
        self.sweeps = 0
        self.fail_first = fail_first

    async def sweep(self) -> int:
        self.sweeps += 1
        if self.fail_first and self.sweeps == 1:
            raise ConnectionError("store unreachable")
        return await super().sweep()


class TTLStore:
    """A store with a TTL of its own (like Redis): no sweep()."""

    async def create(self, record: object) -> None: ...
    async def get(self, session_id: str) -> None: ...
    async def save(self, record: object) -> None: ...
    async def delete(self, session_id: str) -> bool:
        return False


def initialize(base: str) -> str:
    response = httpx.post(
        f"{base}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        },
        headers={"accept": ACCEPT},
    )
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


def wait_until_empty(store: InMemorySessionStore, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(store) == 0:
            return True
        time.sleep(0.02)
    return False


def test_an_idle_session_disappears_with_nobody_touching_it():
    store = InMemorySessionStore(idle_timeout=0.3, sweep_interval=0.05)
    with serve(MCPServer("sweeping").http_app(session_store=store)) as base:
        initialize(base)
        assert len(store) == 1
        # No request reads the session again: only the background sweep can drop it.
        assert wait_until_empty(store), "the idle session was never swept"


def test_the_sweeper_runs_when_the_lifespan_starts_lazily(caplog):
    @asynccontextmanager
    async def lifespan(server: MCPServer):
        yield {}

    store = InMemorySessionStore(idle_timeout=0.3, sweep_interval=0.05)
    app = MCPServer("lazy", lifespan=lifespan).http_app(session_store=store)
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), serve(app, lifespan="off") as base:
        initialize(base)
        assert len(store) == 1
        assert wait_until_empty(store), "the idle session was never swept"
    assert "started lazily" in caplog.text


async def test_the_sweeper_stops_at_shutdown():
    store = CountingStore(idle_timeout=10, sweep_interval=0.02)
    server = MCPServer("stops")
    app = server.http_app(session_store=store)
    async with app.router.lifespan_context(app):
        with anyio.fail_after(5):
            while store.sweeps < 2:
                await anyio.sleep(0.01)
        assert server._sweeper.active == 1
    assert server._sweeper.active == 0
    sweeps = store.sweeps
    await anyio.sleep(0.1)
    assert store.sweeps == sweeps


async def test_a_failing_sweep_is_logged_and_the_next_one_runs(caplog):
    store = CountingStore(fail_first=True, idle_timeout=10, sweep_interval=0.02)
    app = MCPServer("flaky").http_app(session_store=store)
    with caplog.at_level(logging.ERROR, logger="mcp_asgi"):
        async with app.router.lifespan_context(app):
            with anyio.fail_after(5):
                while store.sweeps < 3:
                    await anyio.sleep(0.01)
    assert "Sweeping idle sessions" in caplog.text
    assert "store unreachable" in caplog.text


def test_stores_with_their_own_ttl_are_not_swept():
    server = MCPServer("ttl")
    server.http_app(session_store=TTLStore())
    assert server._sweeper.stores() == []
    never_expires = InMemorySessionStore(idle_timeout=None)
    server.http_app(session_store=never_expires)
    assert never_expires.sweep_interval is None
    # Watched (it has sweep()), but nothing in it expires, so the loop sleeps the default.
    assert server._sweeper.interval() == 60.0


def test_the_default_sweep_interval_follows_the_idle_timeout():
    assert InMemorySessionStore().sweep_interval == 60.0
    assert InMemorySessionStore(idle_timeout=8).sweep_interval == 2.0
    assert InMemorySessionStore(idle_timeout=8, sweep_interval=5).sweep_interval == 5
