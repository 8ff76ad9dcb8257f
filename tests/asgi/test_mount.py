from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.testclient import TestClient

from mcp_asgi.asgi import mount


def test_mount_runs_target_inside_host_lifespan(events: list[str], recorder: Any, target_factory: Any) -> None:
    app = Starlette(lifespan=recorder(events, "host", {"db": "pool"}))
    mount(app, "/mcp", target_factory(events))
    with TestClient(app) as client:
        body = client.post("/mcp").json()
    assert body["started"] == "target"
    assert events == ["host:start", "target:start", "target:stop", "host:stop"]


def test_mount_into_host_without_lifespan(events: list[str], target_factory: Any) -> None:
    app = Starlette()
    mount(app, "/mcp", target_factory(events))
    with TestClient(app) as client:
        assert client.post("/mcp").json()["started"] == "target"
    assert events == ["target:start", "target:stop"]


def test_plain_starlette_mount_does_not_run_target_lifespan(events: list[str], target_factory: Any) -> None:
    # The problem mount() solves, pinned so the contrast stays true.
    app = Starlette()
    app.mount("/mcp", target_factory(events))
    with TestClient(app) as client:
        assert client.post("/mcp/").json()["started"] is None
        assert client.post("/mcp", follow_redirects=False).status_code == 307
    assert events == []


def test_fastapi_startup_handlers_keep_working(events: list[str], target_factory: Any) -> None:
    app = FastAPI(on_startup=[lambda: events.append("on_startup")])
    mount(app, "/mcp", target_factory(events))

    @app.on_event("shutdown")
    def registered_after_mount() -> None:
        events.append("on_shutdown")

    with TestClient(app) as client:
        assert client.post("/mcp").json()["started"] == "target"
    assert events == ["on_startup", "target:start", "target:stop", "on_shutdown"]


def test_fastapi_lifespan_and_host_state_reach_mounted_app(
    events: list[str], recorder: Any, target_factory: Any
) -> None:
    app = FastAPI(lifespan=recorder(events, "host", {"db": "pool", "winner": "host"}))
    mount(app, "/mcp", target_factory(events))
    with TestClient(app) as client:
        state = client.post("/mcp").json()["state"]
    assert state == {"db": "pool", "target_flag": True, "winner": "target"}
    assert events == ["host:start", "target:start", "target:stop", "host:stop"]


def test_no_redirect_with_or_without_trailing_slash(events: list[str], target_factory: Any) -> None:
    app = FastAPI()
    mount(app, "/mcp", target_factory(events))
    with TestClient(app, follow_redirects=False) as client:
        exact = client.post("/mcp")
        slash = client.post("/mcp/")
    assert (exact.status_code, slash.status_code) == (200, 200)
    assert exact.json()["root_path"] == slash.json()["root_path"] == "/mcp"
    assert exact.json()["url"] == slash.json()["url"] == "http://testserver/mcp/"


def test_exact_path_match_keeps_path_params(events: list[str], target_factory: Any) -> None:
    app = Starlette()
    mount(app, "/{tenant}/mcp", target_factory(events))
    with TestClient(app, follow_redirects=False) as client:
        body = client.post("/acme/mcp").json()
    assert body["path_params"] == {"tenant": "acme"}
    assert body["root_path"] == "/acme/mcp"


def test_mount_is_transitive_through_nested_apps(events: list[str], recorder: Any, target_factory: Any) -> None:
    inner = Starlette(lifespan=recorder(events, "inner"))
    mount(inner, "/mcp", target_factory(events))
    outer = FastAPI(lifespan=recorder(events, "outer"))
    mount(outer, "/outer/inner", inner)
    with TestClient(outer, follow_redirects=False) as client:
        exact = client.post("/outer/inner/mcp")
        slash = client.post("/outer/inner/mcp/")
    assert exact.status_code == slash.status_code == 200
    assert exact.json()["started"] == "target"
    assert exact.json()["root_path"] == slash.json()["root_path"] == "/outer/inner/mcp"
    assert events == ["outer:start", "inner:start", "target:start", "target:stop", "inner:stop", "outer:stop"]


def test_inner_mount_added_after_outer_mount_still_runs(events: list[str], target_factory: Any) -> None:
    inner, outer = Starlette(), Starlette()
    mount(outer, "/inner", inner)
    mount(inner, "/mcp", target_factory(events))
    with TestClient(outer) as client:
        assert client.post("/inner/mcp").json()["started"] == "target"
    assert events == ["target:start", "target:stop"]


def test_nested_mount_respects_server_root_path(events: list[str], target_factory: Any) -> None:
    inner = Starlette()
    mount(inner, "/mcp", target_factory(events))
    outer = Starlette()
    mount(outer, "/v1", inner)
    with TestClient(outer, root_path="/proxy", follow_redirects=False) as client:
        # Like uvicorn --root-path, the full path includes the root path.
        body = client.post("/proxy/v1/mcp").json()
    assert body["root_path"] == "/proxy/v1/mcp"
    assert body["url"] == "http://testserver/proxy/v1/mcp/"


def test_plain_mount_of_wrapped_inner_app_with_its_lifespan(
    events: list[str], recorder: Any, target_factory: Any
) -> None:
    inner = Starlette(lifespan=recorder(events, "inner"))
    mount(inner, "/mcp", target_factory(events))
    outer = Starlette(lifespan=inner.router.lifespan_context)
    outer.mount("/inner", inner)
    with TestClient(outer) as client:
        assert client.post("/inner/mcp").json()["started"] == "target"
    assert events == ["inner:start", "target:start", "target:stop", "inner:stop"]


def test_two_targets_each_run_their_own_lifespan(events: list[str], target_factory: Any) -> None:
    app = FastAPI()
    mount(app, "/weather", target_factory(events, "weather"))
    mount(app, "/search", target_factory(events, "search"))
    with TestClient(app) as client:
        weather = client.post("/weather").json()
        search = client.post("/search").json()
    assert (weather["started"], weather["root_path"]) == ("weather", "/weather")
    assert (search["started"], search["root_path"]) == ("search", "/search")
    assert events == ["weather:start", "search:start", "search:stop", "weather:stop"]


def test_mcp_server_target_is_shared_by_two_hosts(events: list[str], server_factory: Any) -> None:
    server = server_factory(events)
    first, second = Starlette(), FastAPI()
    mount(first, "/mcp", server)
    mount(second, "/tools/mcp", server)
    both = Starlette()
    mount(both, "/a", first)
    mount(both, "/b", second)
    with TestClient(both) as client:
        assert client.post("/a/mcp").json()["state"] == {"server_flag": True, "winner": "server"}
        assert client.post("/b/tools/mcp").json()["started"] == "server"
    assert events == ["server:start", "server:stop"]
    # And it starts afresh for the next run of the host.
    with TestClient(first) as client:
        assert client.post("/mcp").status_code == 200
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


def test_arguments_are_checked_at_call_time(target_factory: Any) -> None:
    app, target = Starlette(), target_factory([])
    with pytest.raises(ValueError, match="`path`"):
        mount(app, "mcp", target)
    with pytest.raises(TypeError, match="`app`"):
        mount(target.router, "/mcp", target)
    with pytest.raises(TypeError, match="`target`"):
        mount(app, "/mcp", "not an app")
    with pytest.raises(ValueError, match="`target`"):
        mount(app, "/mcp", app)
    assert app.routes == []


async def test_mount_over_real_uvicorn(events: list[str], recorder: Any, target_factory: Any, serve: Any) -> None:
    app = FastAPI(lifespan=recorder(events, "host", {"db": "pool"}))
    mount(app, "/mcp", target_factory(events))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/mcp")
        assert events == ["host:start", "target:start"]
    assert response.status_code == 200
    assert response.json()["started"] == "target"
    assert response.json()["state"] == {"db": "pool", "target_flag": True, "winner": "target"}
    assert events == ["host:start", "target:start", "target:stop", "host:stop"]


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
