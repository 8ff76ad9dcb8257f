from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from mcp_asgi.asgi import SharedLifespan, combine_lifespans

HOST = object()


# -- combine_lifespans ------------------------------------------------------------------


async def test_lifespans_enter_in_order_and_exit_in_reverse(events: list[str], recorder: Any) -> None:
    combined = combine_lifespans(recorder(events, "a"), recorder(events, "b"), recorder(events, "c"))
    async with combined(HOST):
        events.append("serving")
    assert events == ["a:start", "b:start", "c:start", "serving", "c:stop", "b:stop", "a:stop"]


async def test_state_is_merged_with_later_keys_winning(events: list[str], recorder: Any) -> None:
    combined = combine_lifespans(
        recorder(events, "a", {"db": "a", "only_a": 1}),
        recorder(events, "none"),
        recorder(events, "b", {"db": "b", "only_b": 2}),
    )
    async with combined(HOST) as state:
        assert state == {"db": "b", "only_a": 1, "only_b": 2}


async def test_no_state_when_no_lifespan_yields_any(events: list[str], recorder: Any) -> None:
    async with combine_lifespans(recorder(events, "a"), recorder(events, "b"))(HOST) as state:
        assert state is None


async def test_failed_start_stops_started_ones_and_raises_the_original(events: list[str], recorder: Any) -> None:
    boom = ValueError("database unreachable")

    @asynccontextmanager
    async def failing(app: Any) -> AsyncIterator[None]:
        events.append("failing:start")
        raise boom
        yield  # pragma: no cover

    combined = combine_lifespans(recorder(events, "a"), recorder(events, "b"), failing, recorder(events, "c"))
    with pytest.raises(ValueError) as caught:
        async with combined(HOST):
            events.append("serving")  # pragma: no cover
    assert caught.value is boom
    assert events == ["a:start", "b:start", "failing:start", "b:stop", "a:stop"]


async def test_app_items_run_their_own_lifespan_with_themselves(events: list[str], recorder: Any) -> None:
    seen: list[Any] = []

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        seen.append(app)
        yield {"from_app": True}

    inner = Starlette(lifespan=lifespan)
    async with combine_lifespans(recorder(events, "host"), inner)(HOST) as state:
        assert state == {"from_app": True}
    assert seen == [inner]


async def test_fastapi_item_runs_its_startup_handlers(events: list[str]) -> None:
    api = FastAPI(on_startup=[lambda: events.append("startup")], on_shutdown=[lambda: events.append("shutdown")])
    async with combine_lifespans(api)(HOST):
        events.append("serving")
    assert events == ["startup", "serving", "shutdown"]


def protocol_app(events: list[str], *, fail: str | None = None) -> Any:
    """A bare ASGI app that only speaks the lifespan protocol."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        assert (await receive())["type"] == "lifespan.startup"
        if fail is not None:
            await send({"type": "lifespan.startup.failed", "message": fail})
            return
        events.append("protocol:start")
        scope["state"]["pool"] = "ready"
        await send({"type": "lifespan.startup.complete"})
        assert (await receive())["type"] == "lifespan.shutdown"
        events.append("protocol:stop")
        await send({"type": "lifespan.shutdown.complete"})

    return app


async def test_bare_asgi_app_is_driven_through_the_lifespan_protocol(events: list[str], recorder: Any) -> None:
    combined = combine_lifespans(recorder(events, "host"), protocol_app(events))
    async with combined(HOST) as state:
        assert state == {"pool": "ready"}
        events.append("serving")
    assert events == ["host:start", "protocol:start", "serving", "protocol:stop", "host:stop"]


async def test_bare_asgi_app_startup_failure_raises_with_its_message(events: list[str], recorder: Any) -> None:
    combined = combine_lifespans(recorder(events, "host"), protocol_app(events, fail="no GPU"))
    with pytest.raises(RuntimeError, match="no GPU"):
        async with combined(HOST):
            pass  # pragma: no cover
    assert events == ["host:start", "host:stop"]


async def test_bare_asgi_app_lets_a_later_failure_through_unchanged(events: list[str]) -> None:
    boom = LookupError("later lifespan failed")

    @asynccontextmanager
    async def failing(app: Any) -> AsyncIterator[None]:
        raise boom
        yield  # pragma: no cover

    with pytest.raises(LookupError) as caught:
        async with combine_lifespans(protocol_app(events), failing)(HOST):
            pass  # pragma: no cover
    assert caught.value is boom
    assert events == ["protocol:start", "protocol:stop"]


async def test_asgi_app_without_lifespan_support_is_skipped(events: list[str], recorder: Any) -> None:
    async def http_only(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "Is it missing lifespan support?"

    async with combine_lifespans(recorder(events, "host"), http_only)(HOST) as state:
        events.append("serving")
    assert state is None
    assert events == ["host:start", "serving", "host:stop"]


async def test_mcp_server_item_runs_its_lifespan(events: list[str], server_factory: Any) -> None:
    server = server_factory(events)
    async with combine_lifespans(server)(HOST) as state:
        assert state == {"server_flag": True, "winner": "server"}
        assert server.lifespan_state == state
        assert events == ["server:start"]
    assert events == ["server:start", "server:stop"]
    assert server.lifespan_state == {}


def test_invalid_item_names_its_position() -> None:
    with pytest.raises(TypeError, match=r"lifespans\[1\]"):
        combine_lifespans(lambda app: None, 42)


def test_combined_lifespan_works_as_fastapi_lifespan(events: list[str], recorder: Any, target_factory: Any) -> None:
    target = target_factory(events)
    app = FastAPI(lifespan=combine_lifespans(recorder(events, "host", {"winner": "host", "db": 1}), target))

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return dict(request.state._state)

    with TestClient(app) as client:
        assert client.get("/state").json() == {"winner": "target", "db": 1, "target_flag": True}
    assert events == ["host:start", "target:start", "target:stop", "host:stop"]


def test_combined_lifespan_state_reaches_host_routes_and_tools(
    events: list[str], recorder: Any, server_factory: Any, call: Any
) -> None:
    server = server_factory(events)
    app = FastAPI(lifespan=combine_lifespans(recorder(events, "host", {"winner": "host", "db": 1}), server))
    app.mount("/tools", server.http_app())

    @app.get("/state")
    async def state(request: Request) -> dict[str, Any]:
        return dict(request.state._state)

    with TestClient(app) as client:
        assert events == ["host:start", "server:start"]
        assert client.get("/state").json() == {"winner": "server", "db": 1, "server_flag": True}
        seen = call(client, "/tools/mcp")
    assert seen["state"] == {"winner": "server", "db": 1, "server_flag": True}
    assert seen["lifespan"] == {"server_flag": True, "winner": "server"}
    assert events == ["host:start", "server:start", "server:stop", "host:stop"]


# -- SharedLifespan ---------------------------------------------------------------------


def counting(events: list[str], state: dict[str, Any] | None = None) -> Any:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any] | None]:
        events.append("start")
        try:
            yield state
        finally:
            events.append("stop")

    return lifespan


def test_shared_lifespan_runs_again_after_it_exited(events: list[str]) -> None:
    app = Starlette(
        routes=[Route("/", lambda r: JSONResponse(dict(r.state._state)))],
        lifespan=SharedLifespan(counting(events, {"run": "yes"})),
    )
    for _ in range(2):
        with TestClient(app) as client:
            assert client.get("/").json() == {"run": "yes"}
    assert events == ["start", "stop", "start", "stop"]


async def test_nested_entries_share_one_run(events: list[str]) -> None:
    shared = SharedLifespan(counting(events, {"n": 1}))
    async with shared(HOST) as first:
        async with shared(object()) as second:
            assert second is first
            assert events == ["start"]
        assert shared.running
        assert events == ["start"]
    assert not shared.running
    assert shared.state == {}
    assert events == ["start", "stop"]


def test_two_hosts_share_one_server(events: list[str], server_factory: Any, call: Any) -> None:
    server = server_factory(events)
    host_a = Starlette(lifespan=combine_lifespans(server))
    host_a.mount("/mcp", server.http_app(path="/"))
    host_b = Starlette(lifespan=combine_lifespans(server))
    with TestClient(host_a), TestClient(host_b):
        pass
    # Each TestClient runs its own event loop, so each host gets a run of its own...
    assert events == ["server:start", "server:start", "server:stop", "server:stop"]

    events.clear()
    both = Starlette(lifespan=combine_lifespans(host_a, host_b))
    both.mount("/a", host_a)
    with TestClient(both) as client:
        assert call(client, "/a/mcp/")["lifespan"] == {"server_flag": True, "winner": "server"}
    # ...while hosts on one loop share it.
    assert events == ["server:start", "server:stop"]


async def test_hosts_can_exit_from_other_tasks_than_they_entered(events: list[str]) -> None:
    @asynccontextmanager
    async def with_task_group(app: Any) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep_forever)
            events.append("start")
            yield
            tg.cancel_scope.cancel()
        events.append("stop")

    shared = SharedLifespan(with_task_group)
    first, second = shared(HOST), shared(HOST)

    async def enter_and_exit_first() -> None:
        await first.__aenter__()

    async with anyio.create_task_group() as tg:
        tg.start_soon(enter_and_exit_first)
    async with second:
        await first.__aexit__(None, None, None)
    assert events == ["start", "stop"]


async def test_concurrent_first_requests_start_once_and_warn_once(
    events: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    @asynccontextmanager
    async def slow(app: Any) -> AsyncIterator[dict[str, Any]]:
        events.append("start")
        await anyio.sleep(0.05)
        yield {"ready": True}
        events.append("stop")

    shared = SharedLifespan(slow)
    results: list[dict[str, Any]] = []

    async def request() -> None:
        results.append(await shared.ensure_started(HOST))

    with caplog.at_level(logging.WARNING, logger="mcp_asgi"):
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(request)
    assert events == ["start"]
    assert results == [{"ready": True}] * 50
    warnings = [r for r in caplog.records if r.name == "mcp_asgi" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "mount(app" in warnings[0].getMessage() and "combine_lifespans" in warnings[0].getMessage()

    await shared.aclose()
    assert events == ["start", "stop"]
    assert not shared.running


def test_forgotten_lifespan_still_answers_each_testclient_request(events: list[str]) -> None:
    shared = SharedLifespan(counting(events, {"ready": True}))

    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(await shared.ensure_started(request.app))

    # Without `with`, TestClient runs each request on an event loop of its own; the run
    # started on a closed loop is gone, so the next request starts a fresh one.
    client = TestClient(Starlette(routes=[Route("/", endpoint)]))
    assert client.get("/").json() == {"ready": True}
    assert client.get("/").json() == {"ready": True}
    assert events == ["start", "stop", "start", "stop"]
    assert not shared.running


async def test_lazy_start_failure_propagates_and_can_retry() -> None:
    failures = [KeyError("missing config")]

    @asynccontextmanager
    async def flaky(app: Any) -> AsyncIterator[dict[str, Any]]:
        if failures:
            raise failures.pop()
        yield {"ok": True}

    shared = SharedLifespan(flaky, lazy_warning="lazy!")
    with pytest.raises(KeyError) as caught:
        await shared.ensure_started(HOST)
    assert str(caught.value) == "'missing config'"
    assert not shared.running
    assert await shared.ensure_started(HOST) == {"ok": True}
    await shared.aclose()


async def test_start_failure_on_enter_leaves_it_stopped_and_raises_the_original() -> None:
    boom = OSError("port in use")
    calls: list[str] = []

    @asynccontextmanager
    async def failing(app: Any) -> AsyncIterator[None]:
        calls.append("start")
        raise boom
        yield  # pragma: no cover

    shared = SharedLifespan(failing)
    for _ in range(2):
        with pytest.raises(OSError) as caught:
            async with shared(HOST):
                pass  # pragma: no cover
        assert caught.value is boom
        assert not shared.running
    assert calls == ["start", "start"]


async def test_host_entering_later_shares_the_lazy_run(events: list[str]) -> None:
    shared = SharedLifespan(counting(events, {"n": 1}))
    lazy_state = await shared.ensure_started(HOST)
    async with shared(HOST) as state:
        assert state is lazy_state
        assert events == ["start"]
    assert events == ["start", "stop"]
    assert not shared.running


async def test_shutdown_error_reaches_the_last_host() -> None:
    @asynccontextmanager
    async def bad_shutdown(app: Any) -> AsyncIterator[None]:
        yield
        raise RuntimeError("could not flush")

    shared = SharedLifespan(bad_shutdown)
    with pytest.raises(RuntimeError, match="could not flush"):
        async with shared(HOST):
            pass


def test_shared_lifespan_rejects_non_callable() -> None:
    with pytest.raises(TypeError, match="`fn`"):
        SharedLifespan("not a function")  # type: ignore[arg-type]


def test_default_lazy_warning_says_how_to_wire_it() -> None:
    warning = SharedLifespan(counting([]), name="Weather MCP").lazy_warning
    assert "Weather MCP" in warning
    assert "FastAPI(lifespan=mcp_app.lifespan)" in warning
    assert "mount(app, '/mcp', mcp)" in warning


async def test_official_sdk_app_runs_under_combined_lifespan(events: list[str], recorder: Any, serve: Any) -> None:
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("notes")

    @server.tool()
    def add_note(text: str) -> str:
        """Store a note."""
        return "stored"

    mcp_app = server.streamable_http_app()  # serves /mcp
    app = FastAPI(lifespan=combine_lifespans(recorder(events, "host"), mcp_app))
    app.mount("/", mcp_app)
    with serve(app) as url:
        async with Client(f"{url}/mcp", mode="legacy") as client:
            tools = await client.list_tools()
    assert [tool.name for tool in tools.tools] == ["add_note"]
    assert events == ["host:start", "host:stop"]
