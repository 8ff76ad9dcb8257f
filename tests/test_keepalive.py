"""Keep-alives never cost a message: a reader that stalls longer than the keep-alive interval gets everything.

The stalled reader lets the socket buffers fill, so the server's next send waits for
room far longer than the keep-alive interval. A loop that timed the send along with
the wait for the next message cancelled that send and lost the message.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from mcp_asgi import MCPServer
from mcp_asgi.protocol import limits
from tests.conftest import serve
from tests.http_helpers import ACCEPT, modern_request

COUNT = 32
# 32 messages of 512 kB: 16 MB, several times what loopback socket buffers hold.
PAD = 512 * 1024
KEEPALIVE = 0.05
STALL = 1.0


def build() -> Any:
    mcp = MCPServer("keepalive")
    # subscriptions/listen reads the server's interval, not the app's.
    mcp.keepalive_interval = KEEPALIVE
    endpoint: dict[str, Any] = {}

    @mcp.tool
    async def flood(session: str, count: int, size: int) -> int:
        """Queue `count` numbered messages of `size` bytes for the session's GET stream."""
        broker = endpoint["it"].broker
        for seq in range(count):
            message = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"seq": seq, "pad": "x" * size}}
            while not await broker.publish(session, message):  # the inbox is full: wait for the stream to drain
                await anyio.sleep(0.01)
        return count

    @mcp.tool
    async def touch_all(count: int, size: int) -> int:
        """Say that `count` big resources changed, in order."""
        for seq in range(count):
            await mcp.notify_resource_updated(big_uri(seq, size))
        return count

    app = mcp.http_app(keepalive_interval=KEEPALIVE, max_body_size=64 * 1024 * 1024)
    endpoint["it"] = app.state.mcp_endpoint
    return app


def big_uri(seq: int, size: int) -> str:
    return f"data://{seq}/{'x' * size}"


def events(chunks: Iterator[bytes], until: Any) -> Iterator[dict[str, Any]]:
    """Each JSON data frame of an SSE byte stream, until `until(frame)` is true (that frame included)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *frames, buffer = buffer.split(b"\n\n")
        for frame in frames:
            for line in frame.split(b"\n"):
                if line.startswith(b"data: "):
                    message = json.loads(line[6:])
                    yield message
                    if until(message):
                        return


def stall_then_read(response: httpx.Response, started: threading.Event, until: Any) -> list[dict[str, Any]]:
    """Read a little, stop reading while the server floods the stream, then read it all."""
    chunks = response.iter_raw()  # as it arrives: a chunk size would hold back the tail
    first = next(chunks)  # the stream is open; the flood starts now
    started.set()
    time.sleep(STALL)
    return list(events(itertools.chain([first], chunks), until))


def test_a_stalled_get_stream_reader_gets_every_message_in_order() -> None:
    with serve(build()) as base, httpx.Client(base_url=base, timeout=10) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        session = http.post("/mcp", json=init, headers={"accept": ACCEPT}).headers["mcp-session-id"]
        session_headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        started = threading.Event()
        answers: list[dict[str, Any]] = []

        def call_flood() -> None:
            started.wait(5)
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            call["params"] = {"name": "flood", "arguments": {"session": session, "count": COUNT, "size": PAD}}
            with httpx.Client(base_url=base, timeout=30) as caller:
                answers.append(caller.post("/mcp", json=call, headers=session_headers).json())

        flooder = threading.Thread(target=call_flood)
        flooder.start()
        get_headers = {"accept": "text/event-stream", "mcp-session-id": session}
        with http.stream("GET", "/mcp", headers=get_headers) as response:
            assert response.status_code == 200
            frames = stall_then_read(response, started, lambda m: m["params"]["seq"] == COUNT - 1)
        flooder.join(30)
    assert [frame["params"]["seq"] for frame in frames] == list(range(COUNT))
    assert all(len(frame["params"]["pad"]) == PAD for frame in frames)
    assert answers[0]["result"]["structuredContent"] == {"result": COUNT}


def test_a_stalled_subscriptions_listen_reader_gets_every_notification_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Big notifications fill the socket buffers quickly; a resource update carries only its URI,
    # so the URIs are big, past the default cap on what a listen may name.
    monkeypatch.setattr(limits, "MAX_URI_LENGTH", PAD + 100)
    uris = [big_uri(seq, PAD) for seq in range(COUNT)]
    body, headers = modern_request("subscriptions/listen", {"notifications": {"resourceSubscriptions": uris}})
    with serve(build()) as base, httpx.Client(base_url=base, timeout=10) as http:
        started = threading.Event()

        def touch_all() -> None:
            started.wait(5)
            call, call_headers = modern_request("tools/call", {"name": "touch_all", "arguments": {}}, request_id=2)
            call["params"]["arguments"] = {"count": COUNT, "size": PAD}
            with httpx.Client(base_url=base, timeout=30) as caller:
                assert caller.post("/mcp", json=call, headers=call_headers).status_code == 200

        toucher = threading.Thread(target=touch_all)
        toucher.start()
        with http.stream("POST", "/mcp", json=body, headers=headers) as response:
            assert response.headers["content-type"] == "text/event-stream"
            last = uris[-1]
            frames = stall_then_read(response, started, lambda m: m.get("params", {}).get("uri") == last)
        toucher.join(30)
    updates = [frame for frame in frames if frame["method"] == "notifications/resources/updated"]
    # Compared by number: a failure should not print 16 MB of URIs.
    assert [int(frame["params"]["uri"].split("/")[2]) for frame in updates] == list(range(COUNT))
    assert [frame["params"]["uri"] for frame in updates] == uris


def test_http_app_keepalive_interval_reaches_subscriptions_listen() -> None:
    mcp = MCPServer("quiet")
    body, headers = modern_request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
    with serve(mcp.http_app(keepalive_interval=0.1)) as base, httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("POST", "/mcp", json=body, headers=headers) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
            assert json.loads(first[len("data:") :])["method"] == "notifications/subscriptions/acknowledged"
            started = time.monotonic()
            comment = next(line for line in lines if line.startswith(":"))
    # The default interval is 15 s; the app asked for 0.1 s.
    assert comment == ": ping"
    assert time.monotonic() - started < 5
