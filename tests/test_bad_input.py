"""Bad input gets the right HTTP status and JSON-RPC error code: never a 500, never a hang."""

from __future__ import annotations

import base64

import pytest

from tests.http_helpers import ACCEPT, client_for, initialize, modern_request
from tests.servers import build_server


@pytest.fixture
async def client():
    async with client_for(build_server().http_app()) as http:
        yield http


def error_of(response):
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    return body["error"]


async def test_malformed_json_is_a_parse_error(client):
    response = await client.post(
        "/mcp", content=b"{not json", headers={"content-type": "application/json", "accept": ACCEPT}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == -32700
    assert "id" not in response.json()


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]',
        b"42",
        b'"text"',
        b'{"id": 1, "method": "ping"}',
        b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": 5}',
        b'{"jsonrpc": "2.0", "id": null, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1, 2]}',
        b'{"jsonrpc": "2.0", "id": 1}',
    ],
)
async def test_bodies_that_are_not_json_rpc_requests_are_invalid(client, body):
    response = await client.post("/mcp", content=body, headers={"content-type": "application/json", "accept": ACCEPT})
    assert response.status_code == 400
    assert error_of(response)["code"] == -32600


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_wrong_content_type_is_415(client, content_type):
    headers = {"accept": ACCEPT}
    if content_type:
        headers["content-type"] = content_type
    response = await client.post("/mcp", content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', headers=headers)
    assert response.status_code == 415
    assert error_of(response)["code"] == -32600


@pytest.mark.parametrize("accept", ["", "application/json", "text/event-stream", "text/html"])
async def test_accept_without_json_and_sse_is_406(client, accept):
    body, headers = modern_request("tools/list")
    if accept is None:
        del headers["accept"]
    else:
        headers["accept"] = accept
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 406


async def test_json_response_mode_needs_only_json_in_accept():
    async with client_for(build_server().http_app(json_response=True)) as http:
        body, headers = modern_request("tools/list")
        headers["accept"] = "application/json"
        response = await http.post("/mcp", json=body, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"


async def test_unknown_method_is_404_on_2026(client):
    body, headers = modern_request("tools/frobnicate")
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 404
    assert error_of(response)["code"] == -32601
    assert response.json()["id"] == 1


async def test_legacy_only_methods_do_not_exist_on_2026(client):
    for method in ("ping", "logging/setLevel", "initialize"):
        body, headers = modern_request(method)
        response = await client.post("/mcp", json=body, headers=headers)
        assert response.status_code == 404, method
        assert error_of(response)["code"] == -32601


async def test_unknown_method_is_32601_on_a_2025_session(client):
    session = await initialize(client)
    response = await client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 5, "method": "server/discover"},
        headers={"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"},
    )
    assert response.status_code == 200
    assert error_of(response)["code"] == -32601


async def test_unknown_tool_and_bad_params_are_32602(client):
    body, headers = modern_request("tools/call", {"name": "nope", "arguments": {}})
    response = await client.post("/mcp", json=body, headers=headers)
    assert error_of(response)["code"] == -32602
    assert "nope" in error_of(response)["message"]

    body, headers = modern_request("prompts/get", {"name": "nope"})
    response = await client.post("/mcp", json=body, headers=headers)
    assert error_of(response)["code"] == -32602

    body, headers = modern_request("prompts/get", {"name": "review", "arguments": {}})
    response = await client.post("/mcp", json=body, headers=headers)
    assert error_of(response)["code"] == -32602
    assert "code" in error_of(response)["message"]

    body, headers = modern_request("tools/list", {"cursor": "garbage!"})
    response = await client.post("/mcp", json=body, headers=headers)
    assert error_of(response)["code"] == -32602


async def test_tool_argument_errors_name_the_field(client):
    body, headers = modern_request("tools/call", {"name": "add", "arguments": {"a": 1, "b": "many"}})
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("Invalid arguments for tool 'add': b:")

    body, headers = modern_request("tools/call", {"name": "add", "arguments": [1, 2]})
    result = (await client.post("/mcp", json=body, headers=headers)).json()["result"]
    assert result["isError"] is True and "must be an object" in result["content"][0]["text"]


async def test_unknown_resource_uses_each_revisions_code(client):
    body, headers = modern_request("resources/read", {"uri": "data://missing"})
    response = await client.post("/mcp", json=body, headers=headers)
    assert error_of(response)["code"] == -32602

    session = await initialize(client)
    response = await client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "data://missing"}},
        headers={"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"},
    )
    assert error_of(response)["code"] == -32002


@pytest.mark.parametrize("version", ["1900-01-01", "2099-01-01", "banana"])
async def test_unsupported_protocol_version_lists_the_supported_ones(client, version):
    body, headers = modern_request("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = version
    headers["mcp-protocol-version"] = version
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == -32022
    assert error["data"]["requested"] == version
    assert "2026-07-28" in error["data"]["supported"] and "2025-11-25" in error["data"]["supported"]


async def test_unsupported_version_in_meta_only(client):
    body, headers = modern_request("tools/list")
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "1900-01-01"
    del headers["mcp-protocol-version"]
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    # The missing header is checked first: the spec's Protocol Version Header section says a
    # request without it is rejected "per Server Validation", which is HeaderMismatch (-32020),
    # before the version it would carry is looked at.
    assert error_of(response) == {
        "code": -32020,
        "message": "Header mismatch: the MCP-Protocol-Version header is required",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"mcp-protocol-version": None},
        {"mcp-method": None},
        {"mcp-method": "tools/list"},
        {"mcp-name": None},
        {"mcp-name": "add2"},
        {"mcp-name": "=?base64?not*base64?="},
    ],
)
async def test_header_mismatch_is_400_32020(client, change):
    body, headers = modern_request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    for key, value in change.items():
        if value is None:
            headers.pop(key)
        else:
            headers[key] = value
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == -32020
    assert response.json()["id"] == 1


async def test_base64_encoded_mcp_name_is_decoded(client):
    body, headers = modern_request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    headers["mcp-name"] = "=?base64?" + base64.b64encode(b"add").decode() + "?="
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["result"]["content"][0]["text"] == "3"


async def test_missing_required_meta_fields_are_400_32602(client):
    body, headers = modern_request("tools/list")
    del body["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"]
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == -32602

    body, headers = modern_request("tools/list")
    del body["params"]["_meta"]
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    assert error_of(response)["code"] == -32602


async def test_sessions_are_required_found_and_ended(client):
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    response = await client.post("/mcp", json=request, headers={"accept": ACCEPT})
    assert response.status_code == 400
    assert "Mcp-Session-Id" in error_of(response)["message"]

    response = await client.post("/mcp", json=request, headers={"accept": ACCEPT, "mcp-session-id": "made-up"})
    assert response.status_code == 404

    session = await initialize(client)
    headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    assert (await client.post("/mcp", json=request, headers=headers)).status_code == 200
    assert (await client.delete("/mcp", headers=headers)).status_code == 200
    assert (await client.post("/mcp", json=request, headers=headers)).status_code == 404
    assert (await client.delete("/mcp", headers=headers)).status_code == 404


async def test_legacy_header_version_must_be_supported(client):
    session = await initialize(client)
    response = await client.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2023-01-01"},
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == -32022


async def test_initialize_negotiates_the_version(client):
    for asked, got in [("2025-03-26", "2025-03-26"), ("2025-06-18", "2025-06-18"), ("2031-01-01", "2025-11-25")]:
        response = await client.post(
            "/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": asked, "capabilities": {}},
            },
            headers={"accept": ACCEPT},
        )
        result = response.json()["result"]
        assert result["protocolVersion"] == got
        assert result["serverInfo"] == {"name": "Demo", "version": "1.2.3"}
        assert result["instructions"] == "A server for tests"
        assert "tools" in result["capabilities"]


async def test_2025_03_26_sessions_get_no_structured_output(client):
    session = await initialize(client, version="2025-03-26")
    headers = {"accept": ACCEPT, "mcp-session-id": session}
    tools = (
        await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
    ).json()
    assert all("outputSchema" not in tool for tool in tools["result"]["tools"])
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 1}}}
    result = (await client.post("/mcp", json=call, headers=headers)).json()["result"]
    assert result == {"content": [{"type": "text", "text": "2"}]}


async def test_notifications_and_responses_are_accepted_with_202(client):
    session = await initialize(client)
    headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
    response = await client.post("/mcp", json=note, headers=headers)
    assert response.status_code == 202 and response.content == b""
    answer = {"jsonrpc": "2.0", "id": "s-1", "result": {}}
    assert (await client.post("/mcp", json=answer, headers=headers)).status_code == 202


async def test_get_and_delete_are_405_where_there_are_no_sessions(client):
    _, headers = modern_request("tools/list")
    assert (await client.get("/mcp", headers=headers)).status_code == 405
    assert (await client.delete("/mcp", headers=headers)).status_code == 405
    response = await client.put("/mcp", json={})
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    async with client_for(build_server().http_app(stateless=True)) as stateless:
        assert (await stateless.get("/mcp", headers={"accept": "text/event-stream"})).status_code == 405
        assert (await stateless.delete("/mcp")).status_code == 405


async def test_get_stream_needs_a_session_and_the_right_accept(client):
    assert (await client.get("/mcp", headers={"accept": "text/event-stream"})).status_code == 400
    assert (await client.get("/mcp", headers={"accept": "text/event-stream", "mcp-session-id": "x"})).status_code == 404
    session = await initialize(client)
    assert (
        await client.get("/mcp", headers={"accept": "application/json", "mcp-session-id": session})
    ).status_code == 406


async def test_oversized_body_is_413():
    async with client_for(build_server().http_app(max_body_size=1024)) as http:
        body, headers = modern_request("tools/call", {"name": "fail", "arguments": {"message": "x" * 2000}})
        response = await http.post("/mcp", json=body, headers=headers)
        assert response.status_code == 413


async def test_stateless_mode_serves_legacy_clients_without_sessions():
    async with client_for(build_server().http_app(stateless=True)) as http:
        response = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
            headers={"accept": ACCEPT},
        )
        assert response.status_code == 200
        assert "mcp-session-id" not in response.headers
        response = await http.post(
            "/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "add", "arguments": {"a": 2, "b": 2}},
            },
            headers={"accept": ACCEPT, "mcp-protocol-version": "2025-11-25"},
        )
        assert response.json()["result"]["content"][0]["text"] == "4"
