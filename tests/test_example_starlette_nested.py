"""examples/starlette_nested runs as its docstring says, and its MCP server answers at /outer/inner/mcp."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client

from tests.fixtures.procs import run_example
from tests.http_helpers import modern_request

ROOT = Path(__file__).resolve().parent.parent
MODES = ["legacy", "2026-07-28"]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with run_example("starlette_nested/app.py", "/outer/inner/mcp", "/") as base:
        yield base


@pytest.mark.parametrize("mode", MODES)
async def test_tools_see_middleware_lifespan_and_app_state(base_url: str, mode: str) -> None:
    async with Client(f"{base_url}/outer/inner/mcp", mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"greet", "site_settings"}
        first = (await client.call_tool("greet", {"name": mode})).structured_content
        second = (await client.call_tool("greet", {"name": mode})).structured_content
        settings = (await client.call_tool("site_settings", {})).structured_content
    # `ctx.app.state` is the state of the inner app, the one that mounted the MCP server.
    assert first["greeting"] == f"Hello, {mode}!"
    assert settings == {"greeting": "Hello", "mounted_by": "inner"}
    # The host lifespan's counter is shared by every request.
    assert (first["visit"], second["visit"]) == (1, 2)
    # The site's middleware ran on the MCP requests, a fresh tag each time.
    assert re.fullmatch(r"req-\d+", first["request_tag"])
    assert first["request_tag"] != second["request_tag"]


def test_middleware_tags_mcp_responses_without_redirects(base_url: str) -> None:
    body, headers = modern_request("tools/call", {"name": "greet", "arguments": {"name": "Ada"}})
    for path in ("/outer/inner/mcp", "/outer/inner/mcp/"):
        response = httpx.post(f"{base_url}{path}", json=body, headers=headers)
        assert response.status_code == 200, (path, response.text)
        result = response.json()["result"]["structuredContent"]
        assert result["request_tag"] == response.headers["x-request-tag"]
        assert result["greeting"] == "Hello, Ada!"


def test_home_points_at_the_mcp_endpoint(base_url: str) -> None:
    response = httpx.get(f"{base_url}/")
    assert response.json() == {"mcp": f"{base_url}/outer/inner/mcp"}
    assert response.headers["x-request-tag"].startswith("req-")
