"""Requests in flight per session are capped on every transport; past the cap, "Server busy", the rest goes on."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import anyio
import httpx
import pytest

from mcp_asgi import MCPServer
from mcp_asgi.transports.session_http import InFlightCalls
from mcp_asgi.transports.stdio import StdioTransport
from tests.conftest import serve
from tests.http_helpers import ACCEPT, initialize
from tests.test_sse import open_stream

SERVER_BUSY = -32000


class Gate:
    """Holds the `hold` tool until opened; counts the calls waiting in it (read from the test's thread)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = 0

    async def wait_entered(self, count: int) -> None:
        with anyio.fail_after(5):
            while self.entered < count:
                await anyio.sleep(0.01)


def held_server(gate: Gate) -> MCPServer:
    mcp = MCPServer("held")

    @mcp.tool
    async def hold() -> str:
        gate.entered += 1
        while not gate.opened.is_set():
            await anyio.sleep(0.01)
        return "done"

    return mcp


def call(request_id: int, name: str = "hold") -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": {}}}


def text_of(reply: dict[str, Any]) -> str:
    return reply["result"]["content"][0]["text"]


def test_the_cap_defaults_to_64_and_is_checked():
    assert InFlightCalls().max_per_session == 64
    with pytest.raises(ValueError, match="max_in_flight"):
        MCPServer("x").http_app(max_in_flight=0)
    with pytest.raises(ValueError, match="max_in_flight"):
        MCPServer("x").http_app(transport="sse", max_in_flight=True)
    with pytest.raises(ValueError, match="max_in_flight"):
        StdioTransport(MCPServer("x"), max_in_flight=-1)


async def test_streamable_http_session_past_the_cap_gets_503_and_its_calls_go_on():
    gate = Gate()
    with serve(held_server(gate).http_app(max_in_flight=2, json_response=True)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            session_id = await initialize(http, version="2025-06-18")
            headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"}
            replies: dict[int, httpx.Response] = {}

            async def post(request_id: int) -> None:
                replies[request_id] = await http.post("/mcp", json=call(request_id), headers=headers)

            async with anyio.create_task_group() as group:
                group.start_soon(post, 1)
                group.start_soon(post, 2)
                await gate.wait_entered(2)
                # Without the cap this third call would wait in the gate too, past the timeout.
                refused = await http.post("/mcp", json=call(3), headers=headers, timeout=3)
                # Another session has slots of its own.
                other_id = await initialize(http, version="2025-06-18")
                other = await http.post(
                    "/mcp", json=call(9, "missing"), headers={**headers, "mcp-session-id": other_id}
                )
                gate.opened.set()
            assert refused.status_code == 503
            error = refused.json()
            assert error["id"] == 3 and error["error"]["code"] == SERVER_BUSY
            assert error["error"]["message"].startswith("Server busy: this session already has 2 requests in flight")
            assert other.status_code == 200 and other.json()["id"] == 9
            assert [text_of(replies[i].json()) for i in (1, 2)] == ["done", "done"]
            # Finished calls give their slots back.
            assert text_of((await http.post("/mcp", json=call(4), headers=headers)).json()) == "done"


async def test_legacy_sse_post_past_the_cap_gets_503_and_the_stream_goes_on():
    gate = Gate()
    with serve(held_server(gate).http_app(transport="sse", max_in_flight=2)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
            event, endpoint = await events.next()
            assert event == "endpoint"

            async def post(body: dict[str, Any]) -> httpx.Response:
                return await http.post(endpoint, json=body)

            init = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
            assert (await post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})).status_code == 202
            assert (await events.message())["id"] == 1
            await post({"jsonrpc": "2.0", "method": "notifications/initialized"})
            # The client does not wait for answers: each POST is accepted at once (202).
            assert [(await post(call(i))).status_code for i in (2, 3)] == [202, 202]
            refused = await post(call(4))
            assert refused.status_code == 503
            assert refused.json()["id"] == 4 and refused.json()["error"]["code"] == SERVER_BUSY
            await gate.wait_entered(2)
            gate.opened.set()
            answered = [await events.message(), await events.message()]
            assert sorted(m["id"] for m in answered) == [2, 3]
            assert all(text_of(m) == "done" for m in answered)
            # The refused request never ran; the slots are free again.
            assert (await post(call(5))).status_code == 202
            reply = await events.message()
            assert reply["id"] == 5 and text_of(reply) == "done"


class Lines:
    """A stdout for `StdioTransport`: collects the messages it writes (from a worker thread)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.messages.extend(json.loads(line) for line in data.splitlines() if line.strip())

    def flush(self) -> None:
        pass

    async def reply(self, request_id: int) -> dict[str, Any]:
        with anyio.fail_after(5):
            while True:
                for message in self.messages:
                    if message.get("id") == request_id:
                        return message
                await anyio.sleep(0.01)


async def test_stdio_request_past_the_cap_gets_server_busy_on_the_channel():
    gate = Gate()
    read_fd, write_fd = os.pipe()
    stdout = Lines()
    transport = StdioTransport(held_server(gate), stdin=os.fdopen(read_fd, "rb"), stdout=stdout, max_in_flight=2)

    def send(message: dict[str, Any]) -> None:
        os.write(write_fd, json.dumps(message).encode() + b"\n")

    async with anyio.create_task_group() as group:
        group.start_soon(transport.run)
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
        await stdout.reply(1)
        send(call(2))
        send(call(3))
        await gate.wait_entered(2)
        send(call(4))
        refused = await stdout.reply(4)
        assert refused["error"]["code"] == SERVER_BUSY
        assert "2 requests in flight" in refused["error"]["message"]
        gate.opened.set()
        assert [text_of(await stdout.reply(i)) for i in (2, 3)] == ["done", "done"]
        send(call(5))
        assert text_of(await stdout.reply(5)) == "done"
        os.close(write_fd)  # end of input: the transport returns
