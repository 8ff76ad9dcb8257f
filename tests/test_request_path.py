"""The request path: one way a request is built and answered, and the fixes that live on it."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

from mcp_asgi import MCPServer
from mcp_asgi.components.tools import Tool
from tests.http_helpers import client_for, modern_request


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    # Threads take turns every microsecond instead of every 5 ms, so a race shows in a short test.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


async def test_sync_tool_changing_tools_never_breaks_a_concurrent_listing(fast_thread_switches: None) -> None:
    mcp = MCPServer("churn")
    for i in range(200):
        mcp.tool(name=f"fixed_{i}")(lambda: "x")
    spare = [Tool(lambda: "y", name=f"temp_{i}") for i in range(5)]
    stop = threading.Event()

    @mcp.tool
    def churn() -> int:
        """Add and remove tools from a worker thread until told to stop."""
        rounds = 0
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            # A batch at a time: the tool count stays changed long enough for a listing to overlap.
            for tool in spare:
                mcp.add_tool(tool)
            for tool in spare:
                mcp.remove_tool(tool.name)
            rounds += 1
        return rounds

    async with client_for(mcp.http_app()) as client:
        body, headers = modern_request("tools/call", {"name": "churn", "arguments": {}})
        statuses: list[int] = []

        async def lister() -> None:
            try:
                for n in range(200):
                    listing, list_headers = modern_request("tools/list", request_id=100 + n)
                    response = await client.post("/mcp", json=listing, headers=list_headers)
                    statuses.append(response.status_code)
                    assert "error" not in response.json(), response.text
                    await anyio.sleep(0)
            finally:
                stop.set()

        async with anyio.create_task_group() as group:
            group.start_soon(lister)
            response = await client.post("/mcp", json=body, headers=headers)
        assert response.status_code == 200
        result = response.json()["result"]
        assert "isError" not in result, result
        assert result["structuredContent"]["result"] > 0
        assert statuses == [200] * 200


def test_tool_options_are_one_list_and_unknown_ones_are_named() -> None:
    mcp = MCPServer("options")
    with pytest.raises(TypeError, match="Unknown tool option\\(s\\): colour"):
        mcp.tool(colour="red")(lambda: "x")  # type: ignore[call-arg]
    mcp.tool(name="titled", title="A title", structured_output=False)(lambda: "x")
    assert mcp._tools["titled"].definition["title"] == "A title"
    assert "outputSchema" not in mcp._tools["titled"].definition


@pytest.mark.parametrize(
    ("old", "new"), [("Header", "ParamHeader"), ("File", "FileContent"), ("Message", "PromptMessage")]
)
def test_old_public_names_still_work_and_warn(old: str, new: str) -> None:
    import mcp_asgi

    with pytest.warns(DeprecationWarning, match=f"mcp_asgi.{old} is deprecated.*use mcp_asgi.{new}"):
        value = getattr(mcp_asgi, old)
    assert value is getattr(mcp_asgi, new)
    assert old not in mcp_asgi.__all__ and new in mcp_asgi.__all__


def test_unknown_attribute_of_the_package_is_still_an_attribute_error() -> None:
    import mcp_asgi

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        mcp_asgi.Nope  # noqa: B018
