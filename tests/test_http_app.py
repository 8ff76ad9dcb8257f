"""What `http_app()` returns and how its replies are shaped."""

from __future__ import annotations

import pytest
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse

from mcp_asgi import FastMCP, MCPServer
from tests.http_helpers import ACCEPT, client_for, initialize, modern_request, sse_messages
from tests.servers import build_server


def test_fastmcp_is_mcpserver():
    assert FastMCP is MCPServer


def test_app_state_names_the_server():
    mcp = build_server()
    app = mcp.http_app()
    assert app.state.fastmcp_server is mcp
    assert app.state.mcp_server is mcp


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="transport"):
        build_server().http_app(transport="carrier-pigeon")
    with pytest.raises(ValueError, match="path"):
        build_server().http_app(path="mcp")
    with pytest.raises(TypeError, match="Middleware"):
        build_server().http_app(middleware=[object()])


@pytest.mark.parametrize("path", ["/mcp", "/mcp/"])
async def test_both_slash_forms_answer_without_redirect(path):
    async with client_for(build_server().http_app(transport="streamable-http")) as http:
        body, headers = modern_request("tools/list")
        response = await http.post(path, json=body, headers=headers, follow_redirects=False)
        assert response.status_code == 200
        names = [tool["name"] for tool in response.json()["result"]["tools"]]
        assert names == ["add", "weather", "which_thread", "fail", "crash", "picture", "slow_steps", "whoami"]


async def test_root_path_endpoint():
    async with client_for(build_server().http_app(path="/")) as http:
        body, headers = modern_request("tools/list")
        assert (await http.post("/", json=body, headers=headers)).status_code == 200
        assert (await http.post("", json=body, headers=headers)).status_code == 200


async def test_plain_calls_answer_json_and_streaming_calls_answer_sse():
    async with client_for(build_server().http_app()) as http:
        body, headers = modern_request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
        plain = await http.post("/mcp", json=body, headers=headers)
        assert plain.headers["content-type"] == "application/json"

        body, headers = modern_request(
            "tools/call",
            {"name": "slow_steps", "arguments": {"steps": 2}, "_meta": {"progressToken": "p1"}},
        )
        streamed = await http.post("/mcp", json=body, headers=headers)
        assert streamed.headers["content-type"] == "text/event-stream"
        assert streamed.headers["cache-control"].startswith("no-cache")
        assert streamed.headers["x-accel-buffering"] == "no"
        messages = sse_messages(streamed.text)
        assert [m.get("method") for m in messages] == ["notifications/progress", "notifications/progress", None]
        assert messages[0]["params"] == {"progressToken": "p1", "progress": 1, "total": 2, "message": "step 1"}
        assert messages[-1]["result"]["content"][0]["text"] == "2 steps"


async def test_json_response_mode_never_streams():
    async with client_for(build_server().http_app(json_response=True)) as http:
        body, headers = modern_request(
            "tools/call", {"name": "slow_steps", "arguments": {"steps": 2}, "_meta": {"progressToken": 1}}
        )
        response = await http.post("/mcp", json=body, headers=headers)
        assert response.headers["content-type"] == "application/json"
        assert response.json()["result"]["content"][0]["text"] == "2 steps"


async def test_modern_results_carry_result_type_cache_hints_and_server_info():
    async with client_for(build_server(cache_ttl_ms=5000).http_app()) as http:
        body, headers = modern_request("tools/list")
        result = (await http.post("/mcp", json=body, headers=headers)).json()["result"]
        assert result["resultType"] == "complete"
        assert result["ttlMs"] == 5000 and result["cacheScope"] == "public"
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == {"name": "Demo", "version": "1.2.3"}

        body, headers = modern_request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
        result = (await http.post("/mcp", json=body, headers=headers)).json()["result"]
        assert result["resultType"] == "complete" and "ttlMs" not in result

        body, headers = modern_request("server/discover")
        result = (await http.post("/mcp", json=body, headers=headers)).json()["result"]
        assert result["supportedVersions"][0] == "2026-07-28"
        assert "2025-03-26" in result["supportedVersions"]
        assert result["instructions"] == "A server for tests"
        assert "ttlMs" in result and "tools" in result["capabilities"]


async def test_legacy_results_have_no_modern_fields():
    async with client_for(build_server().http_app()) as http:
        session = await initialize(http)
        headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        result = (
            await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
        ).json()
        assert set(result["result"]) == {"tools"}
        ping = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=headers)
        assert ping.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}


async def test_pagination_walks_every_tool():
    mcp = build_server(page_size=2)
    names, sizes = [], []
    async with client_for(mcp.http_app()) as http:
        cursor = None
        for _ in range(20):
            params = {"cursor": cursor} if cursor else {}
            body, headers = modern_request("tools/list", params)
            result = (await http.post("/mcp", json=body, headers=headers)).json()["result"]
            sizes.append(len(result["tools"]))
            names += [t["name"] for t in result["tools"]]
            cursor = result.get("nextCursor")
            if cursor is None:
                break
    assert sizes == [2, 2, 2, 2]  # the server's 8 tools, 2 a page
    assert names == list(mcp._tools)


async def test_user_middleware_applies_to_the_mcp_endpoint():
    seen = []

    class Record(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            seen.append(request.url.path)
            response = await call_next(request)
            response.headers["x-seen"] = "yes"
            return response

    app = build_server().http_app(middleware=[Middleware(Record)])
    async with client_for(app) as http:
        body, headers = modern_request("tools/list")
        response = await http.post("/mcp", json=body, headers=headers)
        assert response.headers["x-seen"] == "yes"
    assert seen == ["/mcp"]


async def test_custom_routes_are_served_beside_mcp():
    mcp = build_server()

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request):
        return JSONResponse({"status": "ok", "server": request.app.state.mcp_server.name})

    async with client_for(mcp.http_app()) as http:
        response = await http.get("/health")
        assert response.json() == {"status": "ok", "server": "Demo"}


async def test_a_lifespan_that_fails_to_start_answers_503_not_500():
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def broken(server):
        raise RuntimeError("database is down")
        yield  # pragma: no cover

    mcp = MCPServer("fragile", lifespan=broken)
    async with client_for(mcp.http_app()) as http:  # nobody runs the lifespan: the first request starts it
        body, headers = modern_request("tools/list")
        response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == -32603
    assert "database is down" in response.json()["error"]["message"]
