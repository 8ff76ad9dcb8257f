"""`@mcp.tool(run_in_thread=False)`: a trivial plain function runs on the event loop, without a thread hop."""

from __future__ import annotations

import threading

import pytest
from mcp import Client

from mcp_asgi import MCPServer
from tests.conftest import serve


def build() -> MCPServer:
    mcp = MCPServer("inline")

    @mcp.tool(run_in_thread=False)
    def inline() -> str:
        return threading.current_thread().name

    @mcp.tool
    def threaded() -> str:
        return threading.current_thread().name

    @mcp.tool(run_in_thread=False)
    def fails() -> str:
        raise ValueError("inline failure")

    return mcp


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_inline_tool_runs_on_the_loops_thread_and_the_default_in_a_worker(mode: str) -> None:
    with serve(build().http_app()) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            inline = await client.call_tool("inline", {})
            threaded = await client.call_tool("threaded", {})
            failed = await client.call_tool("fails", {})
    # serve() runs uvicorn, and so its event loop, in a plain threading.Thread ("Thread-N (run)").
    assert not inline.content[0].text.startswith("mcp-asgi worker thread")
    assert inline.content[0].text.endswith("(run)")
    assert threaded.content[0].text.startswith("mcp-asgi worker thread")
    assert failed.is_error is True and "inline failure" in failed.content[0].text


def test_run_in_thread_false_is_for_plain_functions_only() -> None:
    mcp = MCPServer("bad")
    with pytest.raises(ValueError, match="run_in_thread=False is for plain `def` functions"):

        @mcp.tool(run_in_thread=False)
        async def already_async() -> str:
            return "x"

    with pytest.raises(TypeError, match="`run_in_thread` must be True or False"):

        @mcp.tool(run_in_thread="no")  # type: ignore[call-overload]
        def odd() -> str:
            return "x"
