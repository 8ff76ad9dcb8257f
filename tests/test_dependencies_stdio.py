"""FastAPI dependencies over stdio: those that need nothing of the request resolve, the others say why not."""

from __future__ import annotations

import sys

import pytest
from mcp import Client, StdioServerParameters

from tests.fixtures.procs import FIXTURES, ROOT

SERVER = str(FIXTURES / "depends_stdio_server.py")


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_over_stdio_request_free_dependencies_resolve_and_the_others_are_tool_errors(mode):
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_asgi", "run", SERVER], cwd=str(ROOT))
    async with Client(params, mode=mode) as client:
        assert (await client.call_tool("where", {})).content[0].text == "eu-west"

        who = await client.call_tool("who", {"user": "forged"})
        assert who.is_error is True
        assert who.content[0].text == (
            "Parameter 'user' needs the HTTP request (api_key reads the header 'x-api-key'), "
            "and this call has none (it came over stdio)"
        )
        raw = await client.call_tool("raw", {})
        assert raw.is_error is True
        assert raw.content[0].text == (
            "Parameter 'request' needs the HTTP request, and this call has none (it came over stdio)"
        )
        assert (await client.call_tool("maybe", {})).content[0].text == "no request"
