"""Requests for the MCP endpoint skip Starlette's middleware stack only when nothing there could act on them."""

from __future__ import annotations

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from mcp_asgi import Context, MCPServer
from tests.conftest import serve
from tests.http_helpers import client_for, modern_request


def where_server() -> MCPServer:
    mcp = MCPServer("direct")

    @mcp.tool
    async def where(ctx: Context) -> dict:
        """What the tool's request knows of the app that served it."""
        request = ctx.request
        assert request is not None
        return {
            "app": type(request.app).__name__,
            "url": str(request.url_for("mcp")),
            "handlers": "starlette.exception_handlers" in request.scope,
        }

    return mcp


async def call_where(http: httpx.AsyncClient, path: str = "/mcp") -> dict:
    body, headers = modern_request("tools/call", {"name": "where", "arguments": {}})
    response = await http.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["result"]["structuredContent"]


async def test_plain_app_goes_straight_to_the_endpoint_and_keeps_the_scope():
    app = where_server().http_app()
    async with client_for(app) as http:
        first = await call_where(http)
        assert app._direct is not None  # decided when Starlette built its stack, on the first request
        second = await call_where(http)
        third = await call_where(http, "/mcp/")
    assert first == second == third == {"app": "MCPApp", "url": "http://testserver/mcp", "handlers": True}


async def test_user_middleware_sees_every_request():
    seen: list[str] = []

    class Count(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
            seen.append(request.url.path)
            return await call_next(request)

    app = where_server().http_app(middleware=[Middleware(Count)])
    async with client_for(app) as http:
        for _ in range(3):
            await call_where(http)
    assert app._direct is None
    assert seen == ["/mcp"] * 3


async def test_added_middleware_and_exception_handlers_keep_the_stack():
    calls: list[str] = []

    async def on_error(request: Request, exc: Exception) -> PlainTextResponse:
        calls.append("handler")
        return PlainTextResponse("handled", status_code=500)

    app = where_server().http_app()
    app.add_exception_handler(Exception, on_error)
    async with client_for(app) as http:
        await call_where(http)
        await call_where(http)
    assert app._direct is None

    marked = where_server().http_app()

    async def mark(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers["x-marked"] = "1"
        return response

    marked.add_middleware(BaseHTTPMiddleware, dispatch=mark)
    async with client_for(marked) as http:
        for _ in range(2):
            body, headers = modern_request("tools/list")
            response = await http.post("/mcp", json=body, headers=headers)
            assert response.headers["x-marked"] == "1"
    assert marked._direct is None


def test_debug_keeps_the_traceback_layer():
    app = where_server().http_app(debug=True)
    app.build_middleware_stack()
    assert app._direct is None


async def test_other_routes_still_go_through_the_router():
    mcp = where_server()

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = mcp.http_app()
    async with client_for(app) as http:
        await call_where(http)
        assert app._direct is not None
        assert (await http.get("/health")).text == "ok"
        assert (await http.get("/nowhere")).status_code == 404


@pytest.mark.parametrize("mounted", [False, True])
def test_an_escaping_exception_is_a_500_from_the_server(mounted: bool):
    from fastapi import FastAPI

    app = where_server().http_app()

    async def broken(scope, receive, send):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug past the endpoint's own error handling")

    host = FastAPI(lifespan=app.lifespan)
    host.mount("/api", app)
    prefix = "/api" if mounted else ""
    body, headers = modern_request("tools/list")
    with serve(host if mounted else app) as base, httpx.Client(base_url=base) as http:
        assert http.post(f"{prefix}/mcp", json=body, headers=headers).status_code == 200
        assert app._direct is not None
        app._direct.endpoint = broken
        response = http.post(f"{prefix}/mcp", json=body, headers=headers)
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
