"""examples/fastapi_app runs as the README says, and every feature it shows works end to end."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.fixtures.procs import run_example

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base_url():
    with run_example("fastapi_app/app.py", "/mcp", "/api/notes") as base:
        yield base


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_tools_use_the_host_lifespan_and_app_state(base_url, mode):
    async with Client(f"{base_url}/mcp", mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"add_note", "list_notes", "app_info", "get_notes", "read_note", "create_note"}
        saved = await client.call_tool("add_note", {"text": f"from {mode}"})
        number = saved.structured_content["number"]
        notes = await client.call_tool("list_notes", {})
        assert f"from {mode}" in notes.structured_content["result"]
        info = await client.call_tool("app_info", {})
        assert info.structured_content == {"title": "Notes API", "motto": "Write it down."}
        resource = await client.read_resource(f"notes://{number}")
        assert resource.contents[0].text == f"from {mode}"
        prompt = await client.get_prompt("summarize_notes", {})
        assert "bullet points" in prompt.messages[0].content.text
    # The JSON API beside MCP sees the same database.
    assert f"from {mode}" in httpx.get(f"{base_url}/api/notes").json()["notes"]


def test_custom_route_health_and_cors(base_url):
    assert httpx.get(f"{base_url}/mcp/health").json() == {"status": "ok"}
    preflight = httpx.options(
        f"{base_url}/mcp",
        headers={
            "origin": "http://localhost:5173",
            "access-control-request-method": "POST",
            "access-control-request-headers": "mcp-protocol-version, mcp-method, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_no_redirect_on_either_slash(base_url):
    for path in ("/mcp", "/mcp/"):
        response = httpx.post(f"{base_url}{path}", json={}, headers={"accept": "application/json, text/event-stream"})
        assert response.status_code == 400  # a JSON-RPC error from the endpoint, not a 307
        assert response.json()["error"]["code"] == -32600


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_json_routes_are_tools_with_their_auth_and_errors(base_url, mode):
    signed_in = create_mcp_http_client(headers={"Authorization": "Bearer ada"})
    async with Client(streamable_http_client(f"{base_url}/mcp", http_client=signed_in), mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        # The Pydantic body's field is the argument; the forwarded Authorization is not one.
        assert tools["create_note"].input_schema["properties"] == {"text": {"type": "string", "title": "Text"}}
        assert tools["create_note"].input_schema["required"] == ["text"]
        assert tools["read_note"].input_schema["properties"]["number"]["type"] == "integer"
        assert set(tools["read_note"].output_schema["properties"]) == {"number", "text", "author"}
        created = await client.call_tool("create_note", {"text": f"route {mode}"})
        assert created.is_error is False
        number = created.structured_content["number"]
        assert created.structured_content == {"number": number, "text": f"route {mode}", "author": "ada"}
        read = await client.call_tool("read_note", {"number": number})
        assert read.structured_content["author"] == "ada"
        listed = await client.call_tool("get_notes", {})
        assert f"route {mode}" in listed.structured_content["notes"]
        missing = await client.call_tool("read_note", {"number": 10_000})
        assert missing.is_error is True and missing.content[0].text.endswith("404 Not Found: No note 10000")
        invalid = await client.call_tool("read_note", {"number": "first"})
        assert invalid.is_error is True and "422" in invalid.content[0].text
    async with Client(f"{base_url}/mcp", mode=mode) as anonymous:
        refused = await anonymous.call_tool("create_note", {"text": "who am I"})
        assert refused.is_error is True
        assert refused.content[0].text.endswith("401 Unauthorized: Sign in with a bearer token")
    # The note saved through the tool is in the same database the HTTP API reads.
    assert f"route {mode}" in httpx.get(f"{base_url}/api/notes").json()["notes"]
