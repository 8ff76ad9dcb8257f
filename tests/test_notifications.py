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
from tests.http_helpers import ACCEPT, initialize, modern_request

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
    def touch_from_a_thread(uri: str) -> str:
        """Say that a resource changed, from sync code (a worker thread), without await."""
        mcp.notify_resource_updated(uri)
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
        self.done = anyio.Event()

    async def pump(self) -> None:
        try:
            async for line in self.response.aiter_lines():
                if line.startswith("data:") and line[5:].strip():
                    await self.send.send(json.loads(line[5:]))
        finally:
            self.done.set()

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
            await call_tool(http, url, "touch_from_a_thread", {"uri": "data://watched"})
            frames = await listen.take(3, 2)
    methods = [f["method"] for f in frames]
    assert methods == ["notifications/tools/list_changed"] + ["notifications/resources/updated"] * 2
    assert all(f["params"]["_meta"][SUB] == 7 for f in frames)
    assert frames[1]["params"]["uri"] == frames[2]["params"]["uri"] == "data://watched"


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
    assert caps["tools"] == caps["prompts"] == {"listChanged": True}
    assert caps["resources"] == {"subscribe": True, "listChanged": True}


async def test_changes_and_shutdown_raised_from_another_thread_reach_open_streams():
    """A change raised from a plain thread, then the hub closed from one, while both kinds of stream are open.

    The server runs on uvicorn's loop in its own thread, the clients on the test's loop, and the
    change and the close come from a third thread: the shape of a sync tool (worker thread) adding
    a tool, and of a host shutting down from its own thread. It used Starlette's TestClient before,
    whose Starlette < 1.8 version (the newest on Python 3.10) reads a whole response before returning
    it, so a stream that ends only after the test acts on it hung there.
    """
    mcp = build()
    with serve(mcp.http_app()) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, url)
            get_headers = {"accept": "text/event-stream", "mcp-session-id": session_id}
            async with http.stream("GET", url, headers=get_headers) as get_stream:
                assert get_stream.status_code == 200
                get_frames = Frames(get_stream)
                async with listening(http, url, {"toolsListChanged": True}, request_id=5) as listen:
                    (ack,) = await listen.take(1, 5)
                    assert ack["method"] == "notifications/subscriptions/acknowledged"
                    async with anyio.create_task_group() as group:
                        group.start_soon(get_frames.pump)
                        await wait_for_listeners(mcp, 2)
                        await anyio.to_thread.run_sync(lambda: mcp.tool(name="from_a_thread")(lambda: "x"))
                        assert [f["method"] for f in await listen.take(1, 5)] == ["notifications/tools/list_changed"]
                        assert [f["method"] for f in await get_frames.take(1, 5)] == [
                            "notifications/tools/list_changed"
                        ]
                        await anyio.to_thread.run_sync(mcp._hub.close)
                        (last,) = await listen.take(1, 5)
                        with anyio.fail_after(5):  # the GET stream ends: its pump returns
                            await get_frames.done.wait()
    assert last["id"] == 5
    assert last["result"]["resultType"] == "complete"
    assert last["result"]["_meta"][SUB] == 5
    assert len(mcp._hub) == 0


async def wait_for_listeners(mcp: MCPServer, count: int) -> None:
    with anyio.fail_after(5):
        while len(mcp._hub) < count:
            await anyio.sleep(0.01)
