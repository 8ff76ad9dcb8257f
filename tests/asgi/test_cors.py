from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.testclient import TestClient

from mcp_asgi.asgi import cors_middleware, mount

ORIGIN = "https://app.example.com"


def make_app(target_factory: Any, **options: Any) -> FastAPI:
    app = FastAPI(middleware=[cors_middleware([ORIGIN], **options)])
    mount(app, "/mcp", target_factory([]))
    return app


def preflight(client: Any, method: str = "POST", headers: str = "", origin: str = ORIGIN) -> Any:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request_headers["Access-Control-Request-Headers"] = headers
    return client.options("/mcp", headers=request_headers)


def test_preflight_for_mcp_request_headers_is_allowed(target_factory: Any) -> None:
    with TestClient(make_app(target_factory)) as client:
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
def test_preflight_allows_stream_and_session_end_methods(target_factory: Any, method: str) -> None:
    with TestClient(make_app(target_factory)) as client:
        assert preflight(client, method=method).status_code == 200


def test_preflight_from_unknown_origin_is_refused(target_factory: Any) -> None:
    with TestClient(make_app(target_factory)) as client:
        response = preflight(client, origin="https://evil.example")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_session_headers_are_exposed_to_page_scripts(target_factory: Any) -> None:
    with TestClient(make_app(target_factory, expose_headers=["X-Trace", "mcp-session-id"])) as client:
        response = client.post("/mcp", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = [h.strip() for h in response.headers["access-control-expose-headers"].split(",")]
    assert exposed == ["Mcp-Session-Id", "MCP-Protocol-Version", "X-Trace"]


def test_mcp_param_headers_must_be_listed(target_factory: Any) -> None:
    with TestClient(make_app(target_factory)) as client:
        assert preflight(client, headers="mcp-param-city").status_code == 400
    with TestClient(make_app(target_factory, allow_headers=["Mcp-Param-City"])) as client:
        assert preflight(client, headers="mcp-param-city").status_code == 200


def test_credentials_echo_the_origin(target_factory: Any) -> None:
    with TestClient(make_app(target_factory, allow_credentials=True, max_age=60)) as client:
        response = preflight(client)
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-max-age"] == "60"


async def test_preflight_over_real_uvicorn(target_factory: Any, serve: Any) -> None:
    with serve(make_app(target_factory)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            response = await preflight(client, headers="mcp-session-id")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN


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
