"""Over stdio and legacy SSE, 2025 sessions get server-to-client requests and list-change notifications."""

from __future__ import annotations

import sys

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client

from tests.conftest import serve
from tests.fixtures import asking_server
from tests.fixtures.procs import FIXTURES, ROOT


async def on_elicit(context, params):
    return types.ElicitResult(action="accept", content={"name": "Ada"})


async def on_sample(context, params):
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="Paris"), model="m", stop_reason="endTurn"
    )


async def exercise(transport) -> None:
    seen: list = []

    async def on_message(message):
        seen.append(getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None))

    async with Client(
        transport,
        mode="legacy",
        elicitation_callback=on_elicit,
        sampling_callback=on_sample,
        message_handler=on_message,
    ) as client:
        assert (await client.call_tool("ask_name", {})).content[0].text == "Hello, Ada!"
        assert (await client.call_tool("ask_model", {})).content[0].text == "Paris"
        await client.call_tool("grow", {})
        with anyio.move_on_after(3):
            while "notifications/tools/list_changed" not in seen:
                await anyio.sleep(0.05)
    assert "notifications/tools/list_changed" in seen


async def test_stdio_session_asks_the_client_and_hears_changes():
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_asgi", "run", str(FIXTURES / "asking_server.py")],
        cwd=str(ROOT),
    )
    await exercise(params)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_sse_session_asks_the_client_and_hears_changes():
    app = asking_server.mcp.http_app(transport="sse")
    with serve(app) as base:
        await exercise(sse_client(f"{base}/sse"))
