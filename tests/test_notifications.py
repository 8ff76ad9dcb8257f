"""List changes and resource updates reach listening clients: 2025 GET streams, 2026 subscriptions/listen."""

from __future__ import annotations

import contextlib
import json

import anyio
import httpx
import pytest
from mcp import Client

from mcp_asgi import MCPServer
from tests.conftest import serve
from tests.http_helpers import ACCEPT, modern_request

SUB = "io.modelcontextprotocol/subscriptionId"


def build() -> MCPServer:
    mcp = MCPServer("notifier")

    @mcp.tool
    def add_tool(name: str) -> str:
        """Register a new tool at run time (sync: runs in a worker thread)."""
        mcp.tool(name=name, description="added at run time")(lambda: "new")
        return "added"

    @mcp.tool
    async def touch(uri: str) -> str:
        """Say that a resource changed."""
        await mcp.notify_resource_updated(uri)
        return "touched"

    @mcp.tool
    def add_prompt() -> str:
        """Register a prompt at run time."""
        mcp.prompt(name="late", description="added late")(lambda: "hi")
        return "ok"

    @mcp.resource("data://watched")
    def watched() -> str:
        return "v1"

    return mcp


class Frames:
    """Reads SSE data frames of a streaming response in the background."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.send, self.receive = anyio.create_memory_object_stream[dict](100)

    async def pump(self) -> None:
        async for line in self.response.aiter_lines():
            if line.startswith("data:") and line[5:].strip():
                await self.send.send(json.loads(line[5:]))

    async def take(self, count: int, timeout: float) -> list[dict]:
        frames: list[dict] = []
        with anyio.move_on_after(timeout):
            while len(frames) < count:
                frames.append(await self.receive.receive())
        return frames


@contextlib.asynccontextmanager
async def listening(http: httpx.AsyncClient, url: str, notifications: dict, request_id: int = 1):
    body, headers = modern_request("subscriptions/listen", {"notifications": notifications}, request_id=request_id)
    async with http.stream("POST", url, json=body, headers=headers) as response:
        assert response.headers["content-type"] == "text/event-stream"
        frames = Frames(response)
        async with anyio.create_task_group() as group:
            group.start_soon(frames.pump)
            yield frames
            group.cancel_scope.cancel()


async def call_tool(http: httpx.AsyncClient, url: str, name: str, arguments: dict) -> dict:
    body, headers = modern_request("tools/call", {"name": name, "arguments": arguments}, request_id=99)
    return (await http.post(url, json=body, headers=headers)).json()


@pytest.fixture(scope="module")
def url():
    with serve(build().http_app()) as base:
        yield f"{base}/mcp"


async def test_listen_acknowledges_then_tags_what_was_asked_for(url):
    async with httpx.AsyncClient(timeout=10) as http:
        wanted = {"toolsListChanged": True, "resourceSubscriptions": ["data://watched"], "bogus": 1}
        async with listening(http, url, wanted, request_id=7) as listen:
            (ack,) = await listen.take(1, 2)
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            assert ack["params"]["_meta"][SUB] == 7
            assert ack["params"]["notifications"] == {
                "toolsListChanged": True,
                "resourceSubscriptions": ["data://watched"],
            }
            assert (await call_tool(http, url, "add_tool", {"name": "fresh"}))["result"]["content"][0][
                "text"
            ] == "added"
            await call_tool(http, url, "touch", {"uri": "data://other"})
            await call_tool(http, url, "touch", {"uri": "data://watched"})
            frames = await listen.take(2, 2)
    assert [f["method"] for f in frames] == ["notifications/tools/list_changed", "notifications/resources/updated"]
    assert all(f["params"]["_meta"][SUB] == 7 for f in frames)
    assert frames[1]["params"]["uri"] == "data://watched"


async def test_listen_honours_the_filter(url):
    async with httpx.AsyncClient(timeout=10) as http:
        async with listening(http, url, {"promptsListChanged": True}) as listen:
            await listen.take(1, 2)
            await call_tool(http, url, "add_tool", {"name": "ignored"})
            await call_tool(http, url, "add_prompt", {})
            frames = await listen.take(2, 1)
    assert [f["method"] for f in frames] == ["notifications/prompts/list_changed"]


async def test_listen_needs_a_filter(url):
    async with httpx.AsyncClient(timeout=10) as http:
        body, headers = modern_request("subscriptions/listen", {})
        response = await http.post(url, json=body, headers=headers)
    assert response.json()["error"]["code"] == -32602


async def test_2025_get_stream_gets_list_changes_and_subscribed_updates(url):
    seen: list = []

    async def on_message(message):
        seen.append(message)

    async with Client(url, mode="legacy", message_handler=on_message) as client:
        await client.session.subscribe_resource("data://watched")
        await anyio.sleep(0.3)  # the client opens its GET stream after initialize
        await client.call_tool("add_tool", {"name": "another"})
        await client.call_tool("touch", {"uri": "data://watched"})
        await client.session.unsubscribe_resource("data://watched")
        await client.call_tool("touch", {"uri": "data://watched"})
        with anyio.move_on_after(2):
            while len(seen) < 2:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        names = {tool.name for tool in (await client.list_tools()).tools}
    methods = [getattr(m.root if hasattr(m, "root") else m, "method", None) for m in seen]
    assert methods == ["notifications/tools/list_changed", "notifications/resources/updated"]
    assert "another" in names


async def test_capabilities_advertise_list_changed_and_subscribe(url):
    async with httpx.AsyncClient() as http:
        init = await http.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
            headers={"accept": ACCEPT},
        )
    caps = init.json()["result"]["capabilities"]
    assert caps["tools"]["listChanged"] and caps["prompts"]["listChanged"]
    assert caps["resources"] == {"subscribe": True, "listChanged": True}


async def test_shutdown_ends_listen_streams_with_a_result():
    mcp = build()
    app = mcp.http_app()
    from starlette.testclient import TestClient

    with TestClient(app) as client:
        body, headers = modern_request(
            "subscriptions/listen", {"notifications": {"toolsListChanged": True}}, request_id=5
        )
        with client.stream("POST", "/mcp", json=body, headers=headers) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert json.loads(first[5:])["method"] == "notifications/subscriptions/acknowledged"
            mcp._hub.close()
            last = next(line for line in lines if line.startswith("data:"))
            result = json.loads(last[5:])
    assert result["id"] == 5
    assert result["result"]["resultType"] == "complete"
    assert result["result"]["_meta"][SUB] == 5
