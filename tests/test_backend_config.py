"""Choosing a backend (app, server, MCP_ASGI_REDIS_URL, in memory) and opening it with the server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcp_asgi import InMemorySessionStore, MCPServer
from mcp_asgi.backend import InMemoryBackend
from mcp_asgi.cli import CLIError, _app_options, _parser
from mcp_asgi.redis import RedisBackend
from tests.http_helpers import ACCEPT, client_for, initialize

HEADERS = {"accept": ACCEPT, "mcp-session-id": "no-such-session", "mcp-protocol-version": "2025-06-18"}


class CountingBackend(InMemoryBackend):
    """An in-memory backend that counts how often it was opened and closed."""

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0
        self.closes = 0

    async def start(self) -> None:
        self.starts += 1
        await super().start()

    async def close(self) -> None:
        self.closes += 1
        await super().close()


def test_the_apps_backend_wins_over_the_servers():
    mine, theirs = InMemoryBackend(), InMemoryBackend()
    mcp = MCPServer("x", backend=theirs)
    assert mcp.http_app(backend=mine).state.mcp_endpoint.backend is mine
    assert mcp.http_app().state.mcp_endpoint.backend is theirs


def test_session_store_still_works_inside_an_in_memory_backend():
    store = InMemorySessionStore()
    endpoint = MCPServer("x").http_app(session_store=store).state.mcp_endpoint
    assert endpoint.sessions is store and isinstance(endpoint.backend, InMemoryBackend)
    with pytest.raises(ValueError, match="not both"):
        MCPServer("x").http_app(session_store=store, backend=InMemoryBackend())


def test_environment_url_chooses_redis(monkeypatch, redis_url):
    monkeypatch.setenv("MCP_ASGI_REDIS_URL", redis_url)
    monkeypatch.setenv("MCP_ASGI_STATE_SECRET", "s3cret")
    mcp = MCPServer("x")
    first, second = mcp.http_app(), mcp.http_app(path="/other")
    backend = first.state.mcp_endpoint.backend
    assert isinstance(backend, RedisBackend) and backend.url == redis_url
    # One backend (one connection pool) for every app of the server.
    assert second.state.mcp_endpoint.backend is backend


def test_a_shared_backend_without_a_state_secret_is_refused(monkeypatch, redis_url):
    monkeypatch.delenv("MCP_ASGI_STATE_SECRET", raising=False)
    with pytest.raises(ValueError, match="MCP_ASGI_STATE_SECRET") as caught:
        MCPServer("x", backend=RedisBackend(redis_url))
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="MCP_ASGI_STATE_SECRET"):
        MCPServer("x").http_app(backend=RedisBackend(redis_url))
    monkeypatch.setenv("MCP_ASGI_REDIS_URL", redis_url)
    with pytest.raises(ValueError, match="state_secret"):
        MCPServer("x").http_app()
    # With a secret all is well.
    MCPServer("x", state_secret="k").http_app(backend=RedisBackend(redis_url))


async def test_the_lifespan_opens_and_closes_the_backend():
    backend = CountingBackend()
    app = MCPServer("x").http_app(backend=backend)
    async with app.lifespan(app):
        assert (backend.starts, backend.closes) == (1, 0)
        async with client_for(app) as http:
            await initialize(http)
        assert backend.starts == 1  # the first request found it open
    assert backend.closes == 1


async def test_without_a_lifespan_the_first_request_opens_the_backend():
    backend = CountingBackend()
    async with client_for(MCPServer("x").http_app(backend=backend)) as http:
        await initialize(http)
        await initialize(http)
    assert backend.starts == 1


async def test_a_redis_backend_serves_sessions_between_start_and_close(redis_url):
    backend = RedisBackend(redis_url, prefix="cfg-test:")
    app = MCPServer("x", state_secret="k").http_app(backend=backend)
    async with app.lifespan(app):
        async with client_for(app) as http:
            session_id = await initialize(http)
        assert (await backend.sessions.get(session_id)) is not None
    assert backend._client is None  # closed at shutdown


def test_cli_redis_url_builds_a_redis_backend_for_http_only():
    args = _parser().parse_args(["run", "x.py", "-t", "http", "--redis-url", "redis://127.0.0.1:1/0"])
    backend = _app_options(args, "http")["backend"]
    assert isinstance(backend, RedisBackend) and backend.url == "redis://127.0.0.1:1/0"
    stdio = _parser().parse_args(["run", "x.py", "--redis-url", "redis://127.0.0.1:1/0"])
    with pytest.raises(CLIError, match="HTTP transports"):
        _app_options(stdio, "stdio")


def test_run_takes_backend_as_an_app_option():
    from mcp_asgi.runner import APP_OPTIONS

    assert "backend" in APP_OPTIONS


def test_import_mcp_asgi_never_imports_redis():
    code = "import sys, mcp_asgi, mcp_asgi.backend, mcp_asgi.server; assert 'redis' not in sys.modules, 'redis'"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_a_worker_starts_while_redis_is_down_and_serves_once_it_is_back(redis_server):
    redis_server.stop()
    backend = RedisBackend(redis_server.url, prefix="down-at-start:", timeout=0.5)
    app = MCPServer("x", state_secret="k").http_app(backend=backend)
    async with app.lifespan(app):
        async with client_for(app) as http:
            refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=HEADERS)
            assert refused.status_code == 503
            redis_server.start()
            session_id = await initialize(http)
        assert (await backend.sessions.get(session_id)) is not None
