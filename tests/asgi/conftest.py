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
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_asgi.asgi import SharedLifespan


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


async def echo(request: Request) -> JSONResponse:
    """What a mounted app sees: whether its lifespan ran, the lifespan state, and its scope."""
    return JSONResponse(
        {
            "started": getattr(request.app.state, "started_by", None),
            "state": {k: v for k, v in request.state._state.items() if isinstance(v, str | int | bool)},
            "root_path": request.scope["root_path"],
            "path": request.scope["path"],
            "path_params": request.path_params,
            "url": str(request.url),
        }
    )


def make_target(events: list[str], name: str = "target", *, shared: bool = False) -> Starlette:
    """A stand-in MCP app: its lifespan sets a flag, `POST /` reports it."""
    lifespan = recording_lifespan(events, name, {f"{name}_flag": True, "winner": name})
    return Starlette(
        routes=[Route("/", echo, methods=["GET", "POST"])],
        lifespan=SharedLifespan(lifespan, name=name) if shared else lifespan,
    )


class FakeServer:
    """Looks like the future `MCPServer` to `mount` and `combine_lifespans`."""

    def __init__(self, events: list[str], name: str = "server") -> None:
        self.app = make_target(events, name, shared=True)
        self.lifespan: SharedLifespan = self.app.router.lifespan_context  # type: ignore[assignment]

    def __mcp_asgi_app__(self) -> Starlette:
        return self.app


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


# Tests reach these helpers through fixtures: `tests/` is not a package, so a test module
# cannot import from this conftest by a stable name.


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
    return FakeServer


@pytest.fixture(name="serve")
def serve_fixture() -> Any:
    return serve
