"""`http_app(dependencies=[Depends(...)])`: FastAPI dependencies run once per HTTP request, before dispatch."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Annotated

import httpx
import pytest
from fastapi import Body, Depends, FastAPI, Header, HTTPException
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcp_asgi import MCPServer, mount
from mcp_asgi.auth import HostAuth
from tests.conftest import serve
from tests.http_helpers import ACCEPT, MODERN, modern_request

RUNS: list[str | None] = []
REQUESTS: list[str] = []
CLOSED: list[str] = []


async def session() -> object:
    try:
        yield "session"
    finally:
        CLOSED.append("session")


def verify_key(x_api_key: Annotated[str | None, Header()] = None, db: object = Depends(session)) -> None:
    RUNS.append(x_api_key)
    if x_api_key is None:
        raise HTTPException(401, "Invalid or missing API key", headers={"WWW-Authenticate": 'ApiKey realm="mcp"'})
    if x_api_key == "reader":
        raise HTTPException(403, "This key cannot use the MCP endpoint")
    if x_api_key == "busy":
        raise HTTPException(429, detail={"retry": 2}, headers={"Retry-After": "2"})
    if x_api_key == "broken":
        raise RuntimeError("the key store is down")


def build() -> MCPServer:
    mcp = MCPServer("gated")

    @mcp.tool
    def ping() -> str:
        return "pong"

    return mcp


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    mcp = build()
    host = FastAPI()
    mount(host, "/mounted", mcp.http_app(path="/", dependencies=[Depends(verify_key)]))
    root = mcp.http_app(dependencies=[Depends(verify_key)])
    legacy = mcp.http_app(transport="sse", dependencies=[Depends(verify_key)])

    async def counted(scope, receive, send):  # every HTTP request the legacy transport gets
        if scope["type"] == "http":
            REQUESTS.append(scope["method"])
        await legacy(scope, receive, send)

    host.mount("/legacy", counted)
    host.mount("/", root)
    with serve(host) as url:
        yield url


@pytest.fixture(autouse=True)
def fresh() -> None:
    RUNS.clear()
    CLOSED.clear()
    REQUESTS.clear()


async def post(url: str, **headers: str) -> httpx.Response:
    body, modern = modern_request("tools/call", {"name": "ping", "arguments": {}})
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(url, json=body, headers={**modern, **headers})


@pytest.mark.parametrize("path", ["/mcp", "/mounted"])
async def test_a_refusing_dependency_answers_401_with_its_challenge_header(base, path):
    response = await post(f"{base}{path}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'ApiKey realm="mcp"'
    assert response.json() == {"jsonrpc": "2.0", "error": {"code": -32001, "message": "Invalid or missing API key"}}
    assert RUNS == [None]


@pytest.mark.parametrize(
    ("key", "status", "code", "message"),
    [("reader", 403, -32003, "This key cannot use the MCP endpoint"), ("busy", 429, -32600, "Too Many Requests")],
)
async def test_other_refusals_keep_their_status_detail_and_headers(base, key, status, code, message):
    response = await post(f"{base}/mcp", **{"x-api-key": key})
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (code, message)
    if key == "busy":
        assert error["data"] == {"retry": 2} and response.headers["retry-after"] == "2"


async def test_a_failing_dependency_is_a_500_with_a_json_rpc_error_and_no_detail(base):
    response = await post(f"{base}/mcp", **{"x-api-key": "broken"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == -32603
    assert "key store" not in response.text


async def test_an_accepted_request_runs_the_dependencies_once_and_closes_them(base):
    response = await post(f"{base}/mcp", **{"x-api-key": "good"})
    assert response.status_code == 200 and response.json()["result"]["content"][0]["text"] == "pong"
    assert RUNS == ["good"] and CLOSED == ["session"]


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_the_official_client_gets_in_with_the_key(base, mode):
    http = create_mcp_http_client(headers={"x-api-key": "good"})
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client:
        assert (await client.call_tool("ping", {})).content[0].text == "pong"
    assert set(RUNS) == {"good"}


async def test_legacy_sse_runs_them_on_the_stream_and_on_each_post(base):
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.get(f"{base}/legacy/sse", headers={"accept": "text/event-stream"})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'ApiKey realm="mcp"'
    async with Client(sse_client(f"{base}/legacy/sse", headers={"x-api-key": "good"}), mode="legacy") as client:
        assert (await client.call_tool("ping", {})).content[0].text == "pong"
    # One run per HTTP request: the GET that opened the stream and each POST of a message.
    assert RUNS == [None] + ["good"] * (len(REQUESTS) - 1)
    assert REQUESTS[:2] == ["GET", "GET"] and REQUESTS.count("POST") >= 3  # initialize, initialized, the call


async def test_the_host_guard_and_preflights_come_first(base):
    async with httpx.AsyncClient(timeout=10) as http:
        evil = await http.post(f"{base}/mcp", json={}, headers={"host": "evil.example", "accept": ACCEPT})
        options = await http.options(f"{base}/mcp")
    assert evil.status_code == 403 and "www-authenticate" not in evil.headers
    assert options.status_code == 405
    assert RUNS == []


def test_a_refused_request_body_is_never_read(base):
    """Headers announcing a 1 MB body that never comes: the 401 arrives at once."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: {ACCEPT}\r\nContent-Length: 1000000\r\n\r\n".encode()
        )
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 401 "), head


async def test_the_auth_gate_answers_before_the_dependencies():
    app = build().http_app(auth=HostAuth(), dependencies=[Depends(verify_key)])
    with serve(app) as url:
        response = await post(f"{url}/mcp", **{"x-api-key": "good"})
    assert response.status_code == 401 and "resource_metadata" in response.headers["www-authenticate"]
    assert RUNS == []


def test_bad_dependencies_are_refused_when_the_app_is_built():
    mcp = build()
    with pytest.raises(TypeError, match="must be a list"):
        mcp.http_app(dependencies=Depends(verify_key))
    with pytest.raises(TypeError, match="FastAPI Depends"):
        mcp.http_app(dependencies=[verify_key])

    def wants_body(payload: Annotated[dict, Body()]) -> None: ...

    with pytest.raises(TypeError, match="wants_body .*reads the request body"):
        mcp.http_app(dependencies=[Depends(wants_body)])
