from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from mcp_asgi import Context, MCPServer
from tests.http_helpers import modern_request


def recording_lifespan(events: list[str], name: str, state: dict[str, Any] | None = None) -> Any:
    """A Starlette lifespan that logs `name:start` / `name:stop` and yields `state`."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any] | None]:
        events.append(f"{name}:start")
        if isinstance(app, Starlette):
            app.state.started_by = name
        try:
            yield state
        finally:
            events.append(f"{name}:stop")

    return lifespan


def make_target(events: list[str], name: str = "target") -> Starlette:
    """A plain Starlette app with a lifespan (no MCP): for the "any ASGI app" contract of combine_lifespans."""
    lifespan = recording_lifespan(events, name, {f"{name}_flag": True, "winner": name})
    return Starlette(lifespan=lifespan)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, str | int | bool)}


def make_server(events: list[str], name: str = "server", state: dict[str, Any] | None = None) -> MCPServer:
    """A real MCP server with a recorded lifespan; its `where` tool reports what a call sees."""
    lifespan = recording_lifespan(events, name, {f"{name}_flag": True, "winner": name} if state is None else state)
    mcp = MCPServer(name, lifespan=lifespan)

    @mcp.tool
    def where(ctx: Context) -> dict:
        """The server, request state and URL this call was served with."""
        request = ctx.request
        return {
            "server": ctx.server.name,
            "state": _plain(request.state._state),
            "lifespan": _plain(ctx.lifespan_context),
            "root_path": request.scope["root_path"],
            "path_params": request.path_params,
            "url": str(request.url),
        }

    return mcp


def call_where(client: Any, path: str) -> dict[str, Any]:
    """One stateless 2026-07-28 `tools/call` of `where` through a TestClient; its structured result."""
    body, headers = modern_request("tools/call", {"name": "where", "arguments": {}})
    response = client.post(path, json=body, headers=headers, follow_redirects=False)
    assert response.status_code == 200, response.text
    assert "isError" not in response.json()["result"], response.text
    return response.json()["result"]["structuredContent"]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` on a real uvicorn at 127.0.0.1 with lifespan="on"; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# Tests reach these helpers through fixtures, so a test names what it uses in its signature.


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def recorder() -> Any:
    return recording_lifespan


@pytest.fixture
def target_factory() -> Any:
    return make_target


@pytest.fixture
def server_factory() -> Any:
    return make_server


@pytest.fixture
def call() -> Any:
    return call_where


@pytest.fixture(name="serve")
def serve_fixture() -> Any:
    return serve
