from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.testclient import TestClient

from mcp_asgi.asgi import cors_middleware, mount
from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST
from tests.http_helpers import ACCEPT, modern_request

ORIGIN = "https://app.example.com"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "page", "version": "1"}},
}


def make_app(server_factory: Any, **options: Any) -> FastAPI:
    """A site whose CORS policy (the host's middleware) covers a real MCP server mounted at /mcp."""
    app = FastAPI(middleware=[cors_middleware([ORIGIN], **options)])
    mount(app, "/mcp", server_factory([]))
    return app


def preflight(client: Any, method: str = "POST", headers: str = "", origin: str = ORIGIN) -> Any:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options("/mcp", headers=request_headers)


def test_preflight_for_mcp_request_headers_is_allowed(server_factory: Any) -> None:
    with TestClient(make_app(server_factory)) as client:
        response = preflight(
            client, headers="content-type, mcp-session-id, mcp-protocol-version, mcp-method, last-event-id"
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["access-control-max-age"] == "600"
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "DELETE", "OPTIONS"}
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "authorization"} <= allowed


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_preflight_allows_stream_and_session_end_methods(server_factory: Any, method: str) -> None:
    with TestClient(make_app(server_factory)) as client:
        assert preflight(client, method=method).status_code == 200


def test_preflight_from_unknown_origin_is_refused(server_factory: Any) -> None:
    with TestClient(make_app(server_factory)) as client:
        response = preflight(client, origin="https://evil.example")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_session_headers_are_exposed_to_page_scripts(server_factory: Any) -> None:
    with TestClient(make_app(server_factory, expose_headers=["X-Trace", "mcp-session-id"])) as client:
        response = client.post(
            "/mcp", json=INITIALIZE, headers={"Origin": ORIGIN, "Accept": ACCEPT, "Content-Type": "application/json"}
        )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["protocolVersion"] == "2025-11-25"
    # The header a page script needs to read is there, and CORS lets it read it.
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["mcp-session-id"])
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = [h.strip() for h in response.headers["access-control-expose-headers"].split(",")]
    assert exposed == ["Mcp-Session-Id", "MCP-Protocol-Version", "WWW-Authenticate", "X-Trace"]


def test_mcp_param_headers_must_be_listed(server_factory: Any) -> None:
    with TestClient(make_app(server_factory)) as client:
        assert preflight(client, headers="mcp-param-city").status_code == 400
    with TestClient(make_app(server_factory, allow_headers=["Mcp-Param-City"])) as client:
        assert preflight(client, headers="mcp-param-city").status_code == 200


def test_credentials_echo_the_origin(server_factory: Any) -> None:
    with TestClient(make_app(server_factory, allow_credentials=True, max_age=60)) as client:
        response = preflight(client)
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-max-age"] == "60"


async def test_preflight_over_real_uvicorn(server_factory: Any, serve: Any) -> None:
    with serve(make_app(server_factory)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await preflight(client, headers="mcp-session-id")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN


async def test_page_on_allowed_origin_calls_a_local_server(server_factory: Any, serve: Any) -> None:
    # CORS on the MCP app (as docs/integration.md shows): the Host/Origin guard adopts its
    # origins, so a page on ORIGIN can call a server listening on 127.0.0.1.
    app = FastAPI()
    mount(app, "/mcp", server_factory([]).http_app(path="/", middleware=[cors_middleware([ORIGIN])]))
    body, headers = modern_request("tools/call", {"name": "where", "arguments": {}})
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Origin": ORIGIN}) as client:
            allowed = await preflight(client, headers="content-type, mcp-protocol-version, mcp-method, mcp-name")
            response = await client.post("/mcp", json=body, headers=headers)
    assert allowed.status_code == 200
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.json()["result"]["structuredContent"]["server"] == "server"


async def test_host_cors_is_not_adopted_by_the_guard_of_a_local_server(server_factory: Any, serve: Any) -> None:
    # Documented (docs/integration.md, "DNS-rebinding protection"): the guard sees only the MCP
    # app's own middleware, so with CORS on the host a local server still refuses the page.
    body, headers = modern_request("tools/call", {"name": "where", "arguments": {}})
    with serve(make_app(server_factory)) as url:
        async with httpx.AsyncClient(base_url=url, headers={"Origin": ORIGIN}) as client:
            response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == INVALID_REQUEST


def test_returns_a_cors_middleware_entry() -> None:
    entry = cors_middleware([ORIGIN])
    assert entry.cls is CORSMiddleware
    assert entry.kwargs["allow_origins"] == (ORIGIN,)


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="`allow_origins`"):
        cors_middleware(ORIGIN)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`allow_headers`"):
        cors_middleware([ORIGIN], allow_headers=[42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="`allow_credentials=True`"):
        cors_middleware(["*"], allow_credentials=True)
    with pytest.raises(ValueError, match="`max_age`"):
        cors_middleware([ORIGIN], max_age=-1)


# What the Host/Origin guard adopts from CORS middleware.


def test_cors_origins_reads_keywords_positions_and_the_preset() -> None:
    from starlette.middleware import Middleware

    from mcp_asgi.asgi.cors import cors_origins

    class Logging:
        def __init__(self, app: Any, allow_origins: Any = ("https://not.cors.example",)) -> None:
            self.app = app

    found = cors_origins(
        [
            Middleware(Logging),
            Middleware(CORSMiddleware, ["https://positional.example"]),
            Middleware(
                CORSMiddleware, allow_origins=["*", "https://keyword.example"], allow_origin_regex=r"https://.*"
            ),
            cors_middleware([ORIGIN]),
        ]
    )
    # Logging's own `allow_origins` is not CORS: not adopted.
    assert found.exact == {"https://positional.example", "https://keyword.example", ORIGIN}
    assert found.wildcard is True
    assert found.allows("https://anything") and not found.allows("http://plain.example")


def test_cors_origins_match_exactly_as_starlette_does() -> None:
    from mcp_asgi.asgi.cors import cors_origins

    found = cors_origins([cors_middleware([ORIGIN])])
    assert found.allows(ORIGIN)
    # CORSMiddleware compares strings: another spelling of the origin gets no CORS headers either.
    assert not found.allows(ORIGIN.upper()) and not found.allows(ORIGIN + ":443") and not found.allows(ORIGIN + "/")
    assert cors_origins([]).exact == frozenset() and not cors_origins([]).wildcard
