"""Issue #3 end to end: an MCP server inside FastAPI/Starlette, driven by the official client on uvicorn.

Each failure the issue names is reproduced here. Where the official SDK (mcp==2.3.0) can be
made to show it, a `test_sdk_*` test pins its behaviour beside ours, so the contrast stays true.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_asgi import Context, FastMCP, MCPServer, combine_lifespans, cors_middleware, mount
from tests.conftest import serve
from tests.http_helpers import ACCEPT, modern_request
from tests.servers import build_server

MODES = ["legacy", "2026-07-28"]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


# -- helpers -------------------------------------------------------------------------------------


def recording(events: list[str], name: str, state: dict[str, Any] | None = None, *, delay: float = 0.0) -> Any:
    """A lifespan (for a host app or an MCPServer) that logs `name:start`/`name:stop` and yields `state`."""

    @asynccontextmanager
    async def lifespan(owner: Any) -> AsyncIterator[dict[str, Any] | None]:
        events.append(f"{name}:start")
        if delay:
            # Widens the window in which concurrent first requests could each start it.
            await asyncio.sleep(delay)
        try:
            yield state
        finally:
            events.append(f"{name}:stop")

    return lifespan


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if isinstance(value, str | int | bool | list)}


def inspecting_server(name: str = "Inspect", lifespan: Any = None, server_class: type[MCPServer] = MCPServer) -> Any:
    """A server whose `where` tool reports what a tool can see of the host."""
    mcp = server_class(name, lifespan=lifespan)

    @mcp.tool
    def where(ctx: Context) -> dict:
        """What this call sees of the app around it."""
        request = ctx.request
        user = request.user if "user" in request.scope else None
        return {
            "server": ctx.server.name,
            "path": request.url.path,
            "app": getattr(ctx.app, "title", type(ctx.app).__name__),
            "app_state": _plain(ctx.app.state._state),
            "request_state": _plain(request.state._state),
            "lifespan": _plain(ctx.lifespan_context),
            "user": user.display_name if user is not None and user.is_authenticated else None,
            "trace": request.scope.get("trace", []),
        }

    @mcp.tool
    def echo(text: str) -> str:
        return text

    return mcp


async def where(url: Any, mode: str = "2026-07-28", **client_options: Any) -> dict[str, Any]:
    async with Client(url, mode=mode, **client_options) as client:
        result = await client.call_tool("where", {})
    assert result.is_error is False, result.content
    return result.structured_content


def call_where(client: TestClient, path: str) -> dict[str, Any]:
    """One stateless tools/call through a TestClient (no uvicorn: the point is the lifespan)."""
    body, headers = modern_request("tools/call", {"name": "where", "arguments": {}})
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["result"]["structuredContent"]


def lazy_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "mcp_asgi" and record.levelno == logging.WARNING and "lifespan" in record.getMessage()
    ]


def sdk_app(**options: Any) -> Starlette:
    """The official SDK's Streamable HTTP app, for contrast."""
    from mcp.server.mcpserver import MCPServer as SDKServer

    server = SDKServer("weather")

    @server.tool()
    def forecast(city: str) -> str:
        """Tomorrow's weather for a city."""
        return f"sunny in {city}"

    return server.streamable_http_app(**options)


class Trace:
    """Pure ASGI middleware: notes its name in the scope on the way in and in a header on the way out."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["trace"] = [*scope.get("trace", []), self.name]

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-trace", self.name.encode())]
            await send(message)

        await self.app(scope, receive, send_traced)


class BearerNames(AuthenticationBackend):
    """`Authorization: Bearer <name>` authenticates as `<name>` (a stand-in for real auth)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        scheme, _, name = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not name:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


# -- a forgotten lifespan: requests still work, the server starts once, one warning ---------------


def test_sdk_app_mounted_without_its_lifespan_answers_500() -> None:
    app = FastAPI()
    app.mount("/mcp", sdk_app(streamable_http_path="/"))
    with serve(app) as base:
        response = httpx.post(f"{base}/mcp/", json=INITIALIZE, headers={"accept": ACCEPT})
    # uvicorn logs "RuntimeError: Task group is not initialized. Make sure to use run()."
    assert response.status_code == 500


def _standalone(mcp: MCPServer) -> tuple[Any, str, dict[str, Any]]:
    return mcp.http_app(), "/mcp", {"lifespan": "off"}


def _plainly_mounted(mcp: MCPServer) -> tuple[Any, str, dict[str, Any]]:
    app = FastAPI(title="Host")
    app.mount("/tools", mcp.http_app())
    return app, "/tools/mcp", {}


@pytest.mark.parametrize("shape", [_standalone, _plainly_mounted], ids=["standalone-lifespan-off", "plain-mount"])
async def test_forgotten_lifespan_starts_once_under_concurrent_first_requests(
    shape: Callable[[MCPServer], tuple[Any, str, dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []
    mcp = inspecting_server("Lazy", lifespan=recording(events, "server", {"pool": "ready"}, delay=0.2))
    app, path, options = shape(mcp)

    async def one_call(index: int) -> dict[str, Any]:
        return await where(f"{base}{path}", MODES[index % 2])

    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), serve(app, **options) as base:
        results = await asyncio.gather(*(one_call(index) for index in range(20)))
        assert events == ["server:start"]
    assert [result["lifespan"] for result in results] == [{"pool": "ready"}] * 20
    warnings = lazy_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "'Lazy'" in warnings[0] and "mount(app, '/mcp', mcp)" in warnings[0]


async def test_wired_lifespan_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    app = FastAPI()
    mount(app, "/mcp", inspecting_server(lifespan=recording(events, "server", {"pool": "ready"})))
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), serve(app) as base:
        assert (await where(f"{base}/mcp"))["lifespan"] == {"pool": "ready"}
    assert events == ["server:start", "server:stop"]
    assert lazy_warnings(caplog) == []


# -- re-entry: a lifespan can run again, and a server can live in two hosts -----------------------


def test_sdk_app_lifespan_runs_only_once() -> None:
    mcp_app = sdk_app()
    app = FastAPI(lifespan=mcp_app.router.lifespan_context)
    app.mount("/tools", mcp_app)
    with TestClient(app):
        pass
    with pytest.raises(RuntimeError, match="can only be called once per instance"), TestClient(app):
        pass


def _wired_by_mount(mcp: MCPServer, host_lifespan: Any) -> tuple[FastAPI, str]:
    app = FastAPI(lifespan=host_lifespan)
    mount(app, "/mcp", mcp)
    return app, "/mcp"


def _wired_by_mcp_app_lifespan(mcp: MCPServer, host_lifespan: Any) -> tuple[FastAPI, str]:
    mcp_app = mcp.http_app(path="/mcp")
    app = FastAPI(lifespan=combine_lifespans(host_lifespan, mcp_app.lifespan))
    app.mount("/mcp-server", mcp_app)
    return app, "/mcp-server/mcp"


def _wired_by_combine_lifespans(mcp: MCPServer, host_lifespan: Any) -> tuple[FastAPI, str]:
    mcp_app = mcp.http_app()
    app = FastAPI(lifespan=combine_lifespans(host_lifespan, mcp_app))
    app.mount("/tools", mcp_app)
    return app, "/tools/mcp"


@pytest.mark.parametrize(
    "wire",
    [_wired_by_mount, _wired_by_mcp_app_lifespan, _wired_by_combine_lifespans],
    ids=["mount", "mcp_app.lifespan", "combine_lifespans"],
)
def test_lifespan_runs_again_in_a_second_testclient(wire: Any, caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    mcp = inspecting_server(lifespan=recording(events, "server", {"pool": "ready"}))
    app, path = wire(mcp, recording(events, "host", {"db": "pool"}))
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"):
        for _ in range(2):
            with TestClient(app) as client:
                seen = call_where(client, path)
                assert seen["lifespan"] == {"pool": "ready"}
                assert seen["request_state"] == {"db": "pool", "pool": "ready"}
    assert events == ["host:start", "server:start", "server:stop", "host:stop"] * 2
    assert lazy_warnings(caplog) == []


async def test_one_server_in_two_hosts_shares_one_run() -> None:
    events: list[str] = []
    mcp = inspecting_server(lifespan=recording(events, "server", {"pool": "ready"}))
    v1, v2 = FastAPI(title="API v1"), FastAPI(title="API v2")
    mount(v1, "/mcp", mcp)
    mount(v2, "/mcp", mcp)
    site = Starlette()
    mount(site, "/v1", v1)
    mount(site, "/v2", v2)
    with serve(site) as base:
        first = await where(f"{base}/v1/mcp", "legacy")
        second = await where(f"{base}/v2/mcp")
        assert events == ["server:start"]
    # mount() hands the MCP app `/v1/mcp/` for `/v1/mcp` (see ExactMount), hence the rstrip.
    assert (first["app"], first["path"].rstrip("/")) == ("API v1", "/v1/mcp")
    assert (second["app"], second["path"].rstrip("/")) == ("API v2", "/v2/mcp")
    assert first["lifespan"] == second["lifespan"] == {"pool": "ready"}
    assert events == ["server:start", "server:stop"]


async def test_one_server_in_two_hosts_on_two_event_loops(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    runs = iter(range(10))

    @asynccontextmanager
    async def numbered(server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        number = next(runs)
        events.append(f"start {number}")
        yield {"run": number}
        events.append(f"stop {number}")

    mcp = inspecting_server(lifespan=numbered)
    first, second = FastAPI(title="first"), FastAPI(title="second")
    mount(first, "/mcp", mcp)
    mount(second, "/mcp", mcp)
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), serve(first) as first_url:
        with serve(second) as second_url:  # uvicorn in another thread: another event loop
            assert (await where(f"{first_url}/mcp"))["lifespan"] == {"run": 0}
            assert (await where(f"{second_url}/mcp"))["lifespan"] == {"run": 1}
        assert (await where(f"{first_url}/mcp"))["lifespan"] == {"run": 0}
    assert sorted(events) == ["start 0", "start 1", "stop 0", "stop 1"]
    assert lazy_warnings(caplog) == []


# -- several servers in one host, each with its own lifespan ---------------------------------------


async def test_several_servers_each_start_their_own_lifespan() -> None:
    events: list[str] = []
    app = FastAPI(lifespan=recording(events, "host", {"db": "pool"}))
    mount(app, "/weather", inspecting_server("Weather", lifespan=recording(events, "weather", {"api": "met.no"})))
    mount(app, "/notes", inspecting_server("Notes", lifespan=recording(events, "notes", {"store": "sqlite"})))
    with serve(app) as base:
        weather = await where(f"{base}/weather", "legacy")
        notes = await where(f"{base}/notes")
        assert events == ["host:start", "weather:start", "notes:start"]
    assert (weather["server"], weather["lifespan"]) == ("Weather", {"api": "met.no"})
    assert (notes["server"], notes["lifespan"]) == ("Notes", {"store": "sqlite"})
    # Every lifespan's state reaches every request's `request.state`, as Starlette merges it.
    assert weather["request_state"] == notes["request_state"] == {"db": "pool", "api": "met.no", "store": "sqlite"}
    assert events[3:] == ["notes:stop", "weather:stop", "host:stop"]


def test_failed_start_stops_what_had_started_and_can_start_again() -> None:
    events: list[str] = []
    broken = [True]

    @asynccontextmanager
    async def database(server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        events.append("notes:start")
        if broken[0]:
            raise ConnectionError("database unreachable")
        yield {"store": "sqlite"}
        events.append("notes:stop")

    app = FastAPI(lifespan=recording(events, "host"))
    mount(app, "/weather", inspecting_server("Weather", lifespan=recording(events, "weather")))
    mount(app, "/notes", inspecting_server("Notes", lifespan=database))
    with pytest.raises(ConnectionError, match="database unreachable"), TestClient(app):
        pass
    assert events == ["host:start", "weather:start", "notes:start", "weather:stop", "host:stop"]

    events.clear()
    broken[0] = False
    with TestClient(app) as client:
        assert call_where(client, "/notes")["lifespan"] == {"store": "sqlite"}
    assert events == ["host:start", "weather:start", "notes:start", "notes:stop", "weather:stop", "host:stop"]


# -- the FastMCP deployment docs' patterns keep working ---------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_fastmcp_docs_fastapi_mount(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    mcp = inspecting_server("Analytics", lifespan=recording(events, "server", {"pool": "ready"}), server_class=FastMCP)
    mcp_app = mcp.http_app(path="/mcp")
    app = FastAPI(title="Analytics API", lifespan=mcp_app.lifespan)
    app.mount("/mcp-server", mcp_app)
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), serve(app) as base:
        seen = await where(f"{base}/mcp-server/mcp", mode)
        assert events == ["server:start"]
    assert (seen["app"], seen["path"], seen["lifespan"]) == ("Analytics API", "/mcp-server/mcp", {"pool": "ready"})
    assert events == ["server:start", "server:stop"]
    assert lazy_warnings(caplog) == []


@pytest.mark.parametrize("mode", MODES)
async def test_fastmcp_docs_nested_starlette_mounts(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []
    mcp = inspecting_server("Nested", lifespan=recording(events, "server", {"pool": "ready"}), server_class=FastMCP)
    mcp_app = mcp.http_app(path="/mcp")
    inner = Starlette(routes=[Mount("/inner", app=mcp_app)])
    inner.state.role = "inner"
    app = Starlette(routes=[Mount("/outer", app=inner)], lifespan=mcp_app.router.lifespan_context)
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), serve(app) as base:
        seen = await where(f"{base}/outer/inner/mcp", mode)
    assert seen["path"] == "/outer/inner/mcp"
    assert seen["app_state"] == {"role": "inner"}  # `ctx.app` is the app that mounted the MCP app
    assert seen["lifespan"] == {"pool": "ready"}
    assert events == ["server:start", "server:stop"]
    assert lazy_warnings(caplog) == []


async def test_mount_is_transitive_through_nested_apps() -> None:
    events: list[str] = []
    inner = Starlette(lifespan=recording(events, "inner"))
    mount(inner, "/mcp", inspecting_server(lifespan=recording(events, "server", {"pool": "ready"})))
    outer = Starlette(lifespan=recording(events, "outer"))
    mount(outer, "/inner", inner)
    root = FastAPI(lifespan=recording(events, "root"))
    mount(root, "/outer", outer)
    with serve(root) as base:
        seen = await where(f"{base}/outer/inner/mcp", "legacy")
    assert (seen["path"].rstrip("/"), seen["lifespan"]) == ("/outer/inner/mcp", {"pool": "ready"})
    assert events == [
        "root:start",
        "outer:start",
        "inner:start",
        "server:start",
        "server:stop",
        "inner:stop",
        "outer:stop",
        "root:stop",
    ]


# -- the host's world reaches tools ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_tools_see_host_state_app_and_user(mode: str) -> None:
    app = FastAPI(
        title="Shop",
        lifespan=recording([], "host", {"db": "pool"}),
        middleware=[Middleware(AuthenticationMiddleware, backend=BearerNames())],
    )
    app.state.motto = "Buy less."
    mount(app, "/mcp", inspecting_server())
    with serve(app) as base:
        http = create_mcp_http_client(headers={"Authorization": "Bearer alice"})
        signed_in = await where(streamable_http_client(f"{base}/mcp", http_client=http), mode)
        anonymous = await where(f"{base}/mcp", mode)
    assert signed_in["app"] == "Shop"
    assert signed_in["app_state"] == {"motto": "Buy less."}
    assert signed_in["request_state"] == {"db": "pool"}
    assert signed_in["user"] == "alice"
    assert anonymous["user"] is None


async def test_standalone_ctx_app_is_the_mcp_app() -> None:
    with serve(inspecting_server().http_app()) as base:
        seen = await where(f"{base}/mcp")
    assert seen["app"] == "MCPApp"


# -- paths: no 307 for a trailing slash -------------------------------------------------------------


def test_sdk_app_redirects_the_other_slash() -> None:
    with serve(sdk_app()) as base:
        response = httpx.post(f"{base}/mcp/", json=INITIALIZE, headers={"accept": ACCEPT})
    assert response.status_code == 307


def _mounted_root_path() -> tuple[Any, str]:
    app = FastAPI()
    mount(app, "/mcp", build_server().http_app(path="/"))
    return app, "/mcp"


def _mounted_server() -> tuple[Any, str]:
    app = FastAPI()
    mount(app, "/mcp", build_server())
    return app, "/mcp"


def _plain_mount_with_path() -> tuple[Any, str]:
    app = Starlette()
    app.mount("/api", build_server().http_app(path="/mcp"))
    return app, "/api/mcp"


def _standalone_app() -> tuple[Any, str]:
    return build_server().http_app(), "/mcp"


@pytest.mark.parametrize(
    "shape",
    [_mounted_root_path, _mounted_server, _plain_mount_with_path, _standalone_app],
    ids=["mount-http_app-root", "mount-server", "app.mount-http_app-path", "standalone"],
)
async def test_no_redirect_for_either_slash(shape: Callable[[], tuple[Any, str]]) -> None:
    app, path = shape()
    with serve(app) as base:
        for url in (f"{base}{path}", f"{base}{path}/"):
            response = httpx.post(url, json=INITIALIZE, headers={"accept": ACCEPT})
            assert response.status_code == 200, (url, response.status_code)
            assert response.json()["result"]["serverInfo"]["name"] == "Demo"
            async with Client(url, mode="legacy") as client:
                assert (await client.call_tool("add", {"a": 1, "b": 2})).content[0].text == "3"


def test_plain_mount_of_a_root_path_app_redirects_in_the_host() -> None:
    # Starlette's router, not mcp-asgi, answers this 307; docs/integration.md says to use mount().
    app = Starlette()
    app.mount("/mcp", build_server().http_app(path="/"))
    with TestClient(app) as client:
        response = client.post("/mcp", json=INITIALIZE, headers={"accept": ACCEPT}, follow_redirects=False)
    assert response.status_code == 307


# -- middleware, CORS, custom routes ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_host_middleware_wraps_the_mcp_apps_middleware(mode: str) -> None:
    app = FastAPI(middleware=[Middleware(Trace, name="host")])
    mcp_app = inspecting_server().http_app(path="/", middleware=[Middleware(Trace, name="mcp")])
    mount(app, "/mcp", mcp_app)
    with serve(app) as base:
        seen = await where(f"{base}/mcp", mode)
        body, headers = modern_request("tools/list")
        response = httpx.post(f"{base}/mcp", json=body, headers=headers)
    assert seen["trace"] == ["host", "mcp"]
    # On the way out the inner middleware adds its header first, the host's comes last.
    assert response.headers.get_list("x-trace") == ["mcp", "host"]


async def test_cors_preset_lets_a_browser_page_talk_mcp() -> None:
    page = "https://chat.example.com"
    app = FastAPI()
    # A localhost server refuses foreign origins (DNS rebinding) unless they are allowed explicitly too.
    mcp_app = build_server().http_app(
        path="/", middleware=[cors_middleware(allow_origins=[page])], allowed_origins=[page]
    )
    mount(app, "/mcp", mcp_app)
    with serve(app) as base:
        preflight = httpx.options(
            f"{base}/mcp",
            headers={
                "origin": page,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, mcp-protocol-version, mcp-session-id",
            },
        )
        refused = httpx.options(
            f"{base}/mcp", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        )
        response = httpx.post(f"{base}/mcp", json=INITIALIZE, headers={"accept": ACCEPT, "origin": page})
        async with Client(f"{base}/mcp", mode="legacy") as client:
            assert (await client.call_tool("add", {"a": 2, "b": 2})).content[0].text == "4"
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == page
    assert refused.status_code == 400
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == page
    exposed = {name.strip().lower() for name in response.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"mcp-session-id", "mcp-protocol-version", "www-authenticate"}
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["mcp-session-id"])


def _server_with_routes() -> MCPServer:
    mcp = build_server()

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "mcp_url": str(request.url_for("mcp"))})

    @mcp.custom_route("/hooks/{kind}", methods=["POST"], name="hook")
    async def hook(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{request.path_params['kind']} at {request.url_for('hook', kind='x').path}")

    return mcp


def _routes_standalone(mcp: MCPServer) -> tuple[Any, str, str]:
    return mcp.http_app(), "", "/mcp"


def _routes_mounted(mcp: MCPServer) -> tuple[Any, str, str]:
    app = FastAPI()
    mount(app, "/tools", mcp)
    return app, "/tools", "/tools/"


def _routes_docs_style(mcp: MCPServer) -> tuple[Any, str, str]:
    mcp_app = mcp.http_app(path="/mcp")
    app = FastAPI(lifespan=mcp_app.lifespan)
    app.mount("/mcp-server", mcp_app)
    return app, "/mcp-server", "/mcp-server/mcp"


@pytest.mark.parametrize(
    "shape", [_routes_standalone, _routes_mounted, _routes_docs_style], ids=["standalone", "mount", "app.mount"]
)
async def test_custom_routes_are_served_beside_mcp_under_the_prefix(shape: Any) -> None:
    app, prefix, mcp_path = shape(_server_with_routes())
    with serve(app) as base:
        health = httpx.get(f"{base}{prefix}/health")
        hook = httpx.post(f"{base}{prefix}/hooks/deploy")
        wrong_method = httpx.get(f"{base}{prefix}/hooks/deploy")
        async with Client(f"{base}{mcp_path}", mode="2026-07-28") as client:
            assert (await client.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"
    assert health.json() == {"status": "ok", "mcp_url": f"{base}{mcp_path}"}
    assert hook.text == f"deploy at {prefix}/hooks/x"
    assert wrong_method.status_code == 405
