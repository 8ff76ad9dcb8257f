from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mcp_asgi.asgi import mount

SERVER_STATE = {"server_flag": True, "winner": "server"}


def test_mount_runs_server_inside_host_lifespan(
    events: list[str], recorder: Any, server_factory: Any, call: Any
) -> None:
    app = Starlette(lifespan=recorder(events, "host", {"db": "pool"}))
    mount(app, "/mcp", server_factory(events))
    with TestClient(app) as client:
        # Started with the host, before any request (not lazily by the first call).
        assert events == ["host:start", "server:start"]
        seen = call(client, "/mcp")
    assert seen["lifespan"] == SERVER_STATE
    assert seen["state"] == {"db": "pool", **SERVER_STATE}
    assert events == ["host:start", "server:start", "server:stop", "host:stop"]


def test_mount_into_host_without_lifespan(events: list[str], server_factory: Any, call: Any) -> None:
    app = Starlette()
    mount(app, "/mcp", server_factory(events))
    with TestClient(app) as client:
        assert events == ["server:start"]
        assert call(client, "/mcp")["lifespan"] == SERVER_STATE
    assert events == ["server:start", "server:stop"]


def test_plain_starlette_mount_leaves_the_server_to_start_lazily(
    events: list[str], server_factory: Any, call: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The problem mount() solves, pinned so the contrast stays true: the host's start does
    # not start the server, and `POST /mcp` is redirected.
    app = Starlette()
    app.mount("/mcp", server_factory(events).http_app(path="/"))
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), TestClient(app) as client:
        assert events == []
        assert client.post("/mcp", follow_redirects=False).status_code == 307
        assert call(client, "/mcp/")["lifespan"] == SERVER_STATE
        assert events == ["server:start"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "mcp_asgi" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "mount(app, '/mcp', mcp)" in warnings[0]


def test_fastapi_startup_handlers_keep_working(events: list[str], server_factory: Any, call: Any) -> None:
    app = FastAPI(on_startup=[lambda: events.append("on_startup")])
    mount(app, "/mcp", server_factory(events))

    @app.on_event("shutdown")
    def registered_after_mount() -> None:
        events.append("on_shutdown")

    with TestClient(app) as client:
        assert call(client, "/mcp")["server"] == "server"
    assert events == ["on_startup", "server:start", "server:stop", "on_shutdown"]


def test_fastapi_lifespan_and_host_state_reach_tools(
    events: list[str], recorder: Any, server_factory: Any, call: Any
) -> None:
    app = FastAPI(lifespan=recorder(events, "host", {"db": "pool", "winner": "host"}))
    mount(app, "/mcp", server_factory(events))
    with TestClient(app) as client:
        seen = call(client, "/mcp")
    # `ctx.request.state` has both lifespans' state, the server's winning on a shared key;
    # `ctx.lifespan_context` has the server's own.
    assert seen["state"] == {"db": "pool", "server_flag": True, "winner": "server"}
    assert seen["lifespan"] == SERVER_STATE
    assert events == ["host:start", "server:start", "server:stop", "host:stop"]


def test_no_redirect_with_or_without_trailing_slash(events: list[str], server_factory: Any, call: Any) -> None:
    app = FastAPI()
    mount(app, "/mcp", server_factory(events))
    with TestClient(app) as client:
        exact = call(client, "/mcp")
        slash = call(client, "/mcp/")
    assert exact["root_path"] == slash["root_path"] == "/mcp"
    assert exact["url"] == slash["url"] == "http://testserver/mcp/"


def test_exact_path_match_keeps_path_params(events: list[str], server_factory: Any, call: Any) -> None:
    app = Starlette()
    mount(app, "/{tenant}/mcp", server_factory(events))
    with TestClient(app) as client:
        exact = call(client, "/acme/mcp")
        slash = call(client, "/acme/mcp/")
    assert exact["path_params"] == slash["path_params"] == {"tenant": "acme"}
    assert exact["root_path"] == slash["root_path"] == "/acme/mcp"


def test_mount_is_transitive_through_nested_apps(
    events: list[str], recorder: Any, server_factory: Any, call: Any
) -> None:
    inner = Starlette(lifespan=recorder(events, "inner"))
    mount(inner, "/mcp", server_factory(events))
    outer = FastAPI(lifespan=recorder(events, "outer"))
    mount(outer, "/outer/inner", inner)
    with TestClient(outer) as client:
        exact = call(client, "/outer/inner/mcp")
        slash = call(client, "/outer/inner/mcp/")
    assert exact["lifespan"] == SERVER_STATE
    assert exact["root_path"] == slash["root_path"] == "/outer/inner/mcp"
    assert events == ["outer:start", "inner:start", "server:start", "server:stop", "inner:stop", "outer:stop"]


def test_inner_mount_added_after_outer_mount_still_runs(events: list[str], server_factory: Any, call: Any) -> None:
    inner, outer = Starlette(), Starlette()
    mount(outer, "/inner", inner)
    mount(inner, "/mcp", server_factory(events))
    with TestClient(outer) as client:
        assert events == ["server:start"]
        assert call(client, "/inner/mcp")["lifespan"] == SERVER_STATE
    assert events == ["server:start", "server:stop"]


def test_nested_mount_respects_server_root_path(events: list[str], server_factory: Any, call: Any) -> None:
    inner = Starlette()
    mount(inner, "/mcp", server_factory(events))
    outer = Starlette()
    mount(outer, "/v1", inner)
    with TestClient(outer, root_path="/proxy") as client:
        # Like uvicorn --root-path, the full path includes the root path.
        seen = call(client, "/proxy/v1/mcp")
    assert seen["root_path"] == "/proxy/v1/mcp"
    assert seen["url"] == "http://testserver/proxy/v1/mcp/"


def test_plain_mount_of_wrapped_inner_app_with_its_lifespan(
    events: list[str], recorder: Any, server_factory: Any, call: Any
) -> None:
    inner = Starlette(lifespan=recorder(events, "inner"))
    mount(inner, "/mcp", server_factory(events))
    outer = Starlette(lifespan=inner.router.lifespan_context)
    outer.mount("/inner", inner)
    with TestClient(outer) as client:
        assert events == ["inner:start", "server:start"]
        assert call(client, "/inner/mcp")["lifespan"] == SERVER_STATE
    assert events == ["inner:start", "server:start", "server:stop", "inner:stop"]


def test_two_servers_each_run_their_own_lifespan(events: list[str], server_factory: Any, call: Any) -> None:
    app = FastAPI()
    mount(app, "/weather", server_factory(events, "weather"))
    mount(app, "/search", server_factory(events, "search"))
    with TestClient(app) as client:
        weather = call(client, "/weather")
        search = call(client, "/search")
    assert (weather["server"], weather["root_path"], weather["lifespan"]) == (
        "weather",
        "/weather",
        {"weather_flag": True, "winner": "weather"},
    )
    assert (search["server"], search["root_path"], search["lifespan"]) == (
        "search",
        "/search",
        {"search_flag": True, "winner": "search"},
    )
    assert events == ["weather:start", "search:start", "search:stop", "weather:stop"]


def test_mcp_server_is_shared_by_two_hosts(events: list[str], server_factory: Any, call: Any) -> None:
    server = server_factory(events)
    first, second = Starlette(), FastAPI()
    mount(first, "/mcp", server)
    mount(second, "/tools/mcp", server)
    both = Starlette()
    mount(both, "/a", first)
    mount(both, "/b", second)
    with TestClient(both) as client:
        assert events == ["server:start"]
        assert call(client, "/a/mcp")["state"] == SERVER_STATE
        assert call(client, "/b/tools/mcp")["root_path"] == "/b/tools/mcp"
    assert events == ["server:start", "server:stop"]
    # And it starts afresh for the next run of the host.
    with TestClient(first) as client:
        assert call(client, "/mcp")["lifespan"] == SERVER_STATE
    assert events == ["server:start", "server:stop", "server:start", "server:stop"]


def test_bare_asgi_target_gets_its_lifespan_run(events: list[str]) -> None:
    async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["root_path"].encode()})

    app = Starlette()
    mount(app, "/bare", bare)
    with TestClient(app) as client:
        assert client.post("/bare").text == "/bare"
    assert events == ["lifespan.startup", "lifespan.shutdown"]


def test_arguments_are_checked_at_call_time(server_factory: Any) -> None:
    app, target = Starlette(), server_factory([])
    with pytest.raises(ValueError, match="`path`"):
        mount(app, "mcp", target)
    with pytest.raises(TypeError, match="`app`"):
        mount(app.router, "/mcp", target)
    with pytest.raises(TypeError, match="`app`"):
        mount(target, "/mcp", app)
    with pytest.raises(TypeError, match="`target`"):
        mount(app, "/mcp", "not an app")
    with pytest.raises(ValueError, match="`target`"):
        mount(app, "/mcp", app)
    assert app.routes == []


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_mount_over_real_uvicorn(
    events: list[str], recorder: Any, server_factory: Any, serve: Any, mode: str
) -> None:
    from mcp import Client

    app = FastAPI(lifespan=recorder(events, "host", {"db": "pool"}))
    mount(app, "/mcp", server_factory(events))
    with serve(app) as url:
        async with Client(f"{url}/mcp", mode=mode) as client:
            result = await client.call_tool("where", {})
        assert events == ["host:start", "server:start"]
    assert result.is_error is False
    assert result.structured_content["state"] == {"db": "pool", **SERVER_STATE}
    assert result.structured_content["url"] == f"{url}/mcp/"
    assert events == ["host:start", "server:start", "server:stop", "host:stop"]


# -- the official MCP SDK's app: its session manager only works once its lifespan ran ---------

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def sdk_app(**options: Any) -> Starlette:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("weather")

    @server.tool()
    def forecast(city: str) -> str:
        """Tomorrow's weather for a city."""
        return f"sunny in {city}"

    return server.streamable_http_app(**options)


async def test_official_sdk_app_mounted_in_fastapi_serves_a_real_client(serve: Any) -> None:
    from mcp import Client

    app = FastAPI()
    mount(app, "/mcp", sdk_app(streamable_http_path="/"))
    with serve(app) as url:
        async with Client(f"{url}/mcp", mode="legacy") as client:
            tools = await client.list_tools()
            result = await client.call_tool("forecast", {"city": "Oslo"})
    assert [tool.name for tool in tools.tools] == ["forecast"]
    assert result.structured_content == {"result": "sunny in Oslo"}


def test_official_sdk_app_fails_when_plainly_mounted() -> None:
    app = FastAPI()
    app.mount("/mcp", sdk_app(streamable_http_path="/"))
    headers = {"Accept": "application/json, text/event-stream"}
    with TestClient(app) as client, pytest.raises(RuntimeError, match="Task group is not initialized"):
        client.post("/mcp/", json=INITIALIZE, headers=headers)
