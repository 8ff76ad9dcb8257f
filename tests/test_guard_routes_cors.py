"""The Host/Origin guard covers custom routes, and adopts the origins the MCP app's CORS middleware allows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse

from mcp_asgi import MCPServer, cors_middleware
from tests.conftest import serve

APP_ORIGIN = "https://app.example.com"
ACCEPT = "application/json, text/event-stream"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}
EVIL_HOST = {"host": "evil.example.com", "origin": "http://evil.example.com"}


def server_with_routes() -> MCPServer:
    server = MCPServer("Routes")

    @server.custom_route("/status", methods=["GET"])
    async def status(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @server.custom_route("/health", methods=["GET"], guard=False)
    async def health(request: Any) -> JSONResponse:
        return JSONResponse({"healthy": True})

    return server


# Custom routes.


def test_custom_routes_are_guarded_like_the_endpoint_unless_opted_out() -> None:
    with serve(server_with_routes().http_app()) as base:
        refused = httpx.get(f"{base}/status", headers=EVIL_HOST)
        assert refused.status_code == 403
        assert "Host header 'evil.example.com' is not allowed" in refused.json()["error"]["message"]
        evil_origin = httpx.get(f"{base}/status", headers={"origin": "http://evil.example.com"})
        assert evil_origin.status_code == 403
        assert httpx.get(f"{base}/status").json() == {"status": "ok"}
        # guard=False: served to any Host and Origin.
        assert httpx.get(f"{base}/health", headers=EVIL_HOST).json() == {"healthy": True}


def test_custom_route_guard_follows_the_lists_of_each_app() -> None:
    # One server, two apps: each custom route copy is behind its own app's guard.
    server = server_with_routes()
    with serve(server.http_app(allowed_hosts=["evil.example.com"])) as open_base, serve(server.http_app()) as base:
        assert httpx.get(f"{open_base}/status", headers={"host": "evil.example.com"}).status_code == 200
        assert httpx.get(f"{base}/status", headers={"host": "evil.example.com"}).status_code == 403


def test_custom_routes_under_a_mount_are_guarded() -> None:
    from fastapi import FastAPI

    from mcp_asgi import mount

    app = FastAPI()
    mount(app, "/mcp", server_with_routes())
    with serve(app) as base:
        assert httpx.get(f"{base}/mcp/status", headers=EVIL_HOST).status_code == 403
        assert httpx.get(f"{base}/mcp/status").status_code == 200
        assert httpx.get(f"{base}/mcp/health", headers=EVIL_HOST).status_code == 200


# CORS middleware given to http_app().


def docs_cors_app(**cors: Any) -> Any:
    """The FastMCP docs' CORS example, with the origins under test."""
    server = MCPServer("CORS")

    @server.tool
    def ping() -> str:
        return "pong"

    middleware = [
        Middleware(
            CORSMiddleware,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["mcp-protocol-version", "mcp-session-id", "Authorization", "Content-Type"],
            expose_headers=["mcp-session-id"],
            **cors,
        )
    ]
    return server.http_app(middleware=middleware)


def browser_calls(base: str, origin: str) -> tuple[httpx.Response, httpx.Response]:
    """What a page at `origin` does: a preflight, then the POST."""
    preflight = httpx.options(
        f"{base}/mcp",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, mcp-protocol-version",
        },
    )
    post = httpx.post(f"{base}/mcp", json=INIT, headers={"origin": origin, "accept": ACCEPT})
    return preflight, post


def test_docs_cors_example_answers_its_own_origin_on_localhost() -> None:
    with serve(docs_cors_app(allow_origins=[APP_ORIGIN])) as base:
        preflight, post = browser_calls(base, APP_ORIGIN)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        assert post.status_code == 200, post.text
        assert post.headers["access-control-allow-origin"] == APP_ORIGIN
        assert post.json()["result"]["serverInfo"]["name"] == "CORS"
        # Another site is still refused, and the Host rule still holds for the adopted origin.
        assert browser_calls(base, "https://evil.example")[1].status_code == 403
        rebound = httpx.post(
            f"{base}/mcp", json=INIT, headers={"origin": APP_ORIGIN, "host": "evil.example.com", "accept": ACCEPT}
        )
        assert rebound.status_code == 403 and "Host header" in rebound.json()["error"]["message"]


def test_cors_middleware_preset_origins_are_adopted() -> None:
    server = MCPServer("Preset")
    with serve(server.http_app(middleware=[cors_middleware([APP_ORIGIN])])) as base:
        assert browser_calls(base, APP_ORIGIN)[1].status_code == 200
        assert browser_calls(base, "https://other.example.com")[1].status_code == 403


def test_cors_wildcard_keeps_dns_rebinding_protection_on_localhost() -> None:
    with serve(docs_cors_app(allow_origins=["*"])) as base:
        post = browser_calls(base, APP_ORIGIN)[1]
        assert post.status_code == 403
        assert "allow_origins=['*'] does not lift this check" in post.json()["error"]["message"]
        # Pages served from localhost itself still work.
        assert browser_calls(base, "http://localhost:5173")[1].status_code == 200


def test_cors_origin_regex_is_adopted() -> None:
    with serve(docs_cors_app(allow_origin_regex=r"https://[a-z]+\.example\.com")) as base:
        assert browser_calls(base, APP_ORIGIN)[1].status_code == 200
        # fullmatch, as CORSMiddleware: a longer origin that merely starts the same way is refused.
        assert browser_calls(base, "https://app.example.com.evil.net")[1].status_code == 403


@pytest.mark.parametrize("allowed_origins", [["http://localhost:3000"], ["https://intranet.example.com"]])
def test_cors_origins_add_to_explicit_allowed_origins(allowed_origins: list[str]) -> None:
    server = MCPServer("Both")
    app = server.http_app(
        middleware=[cors_middleware([APP_ORIGIN])], allowed_hosts=["127.0.0.1:*"], allowed_origins=allowed_origins
    )
    with serve(app) as base:
        assert browser_calls(base, APP_ORIGIN)[1].status_code == 200
        assert browser_calls(base, allowed_origins[0])[1].status_code == 200
        assert browser_calls(base, "https://evil.example")[1].status_code == 403
