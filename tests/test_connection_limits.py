"""Per-connection limits: a slow request body gets 408; a stream nobody reads holds a bounded backlog."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest

from mcp_asgi import MCPServer
from mcp_asgi.transports.broker import InProcessBroker
from tests.conftest import serve
from tests.http_helpers import ACCEPT

PARTIAL = b'{"jsonrpc": "2.0", "id": 1, "method": "pi'


def head(path: str, port: int, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: {ACCEPT}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def read_response(stream: anyio.abc.ByteStream) -> tuple[int, dict]:
    """Status and JSON body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        body += await stream.receive()
    return int(lines[0].split()[1]), json.loads(body[:length])


async def stalled_post(base: str, path: str, *, trickle: bool) -> tuple[int, dict, float]:
    """Send headers and part of a body, then stall (or trickle a byte every 50 ms); the answer."""
    port = int(base.rsplit(":", 1)[1])
    started = time.monotonic()
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(head(path, port, 200) + PARTIAL)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                if trickle:

                    async def drip() -> None:
                        for _ in range(100):  # 5 s of drips, never the whole body
                            await anyio.sleep(0.05)
                            await stream.send(b" ")

                    group.start_soon(drip)
                status, body = await read_response(stream)
                group.cancel_scope.cancel()
    return status, body, time.monotonic() - started


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickled"])
async def test_a_slow_body_gets_408_on_streamable_http(trickle):
    with serve(MCPServer("slow").http_app(body_timeout=0.5)) as base:
        status, body, elapsed = await stalled_post(base, "/mcp", trickle=trickle)
        assert status == 408
        assert body == {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Request Timeout: the request body did not arrive within 0.5 s"},
        }
        assert elapsed >= 0.5
        # The server still answers a normal request.
        initialize = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        response = httpx.post(f"{base}/mcp", json=initialize, headers={"accept": ACCEPT})
        assert response.status_code == 200
        assert response.json()["result"]["protocolVersion"] == "2025-11-25"


async def test_a_slow_body_gets_408_on_legacy_sse():
    with serve(MCPServer("slow-sse").http_app(transport="sse", body_timeout=0.5)) as base:
        async with (
            httpx.AsyncClient(timeout=5) as client,
            client.stream("GET", f"{base}/sse", headers={"accept": "text/event-stream"}) as sse,
        ):
            lines = sse.aiter_lines()
            assert await lines.__anext__() == "event: endpoint"
            endpoint = (await lines.__anext__())[len("data: ") :]
            status, body, _ = await stalled_post(base, endpoint, trickle=True)
    assert status == 408
    assert body["error"] == {"code": -32600, "message": "Request Timeout: the request body did not arrive within 0.5 s"}


def test_the_body_timeout_defaults_to_30_seconds_and_is_checked():
    assert MCPServer("d").http_app().state.mcp_endpoint.body_timeout == 30.0
    assert MCPServer("d").http_app(transport="sse").state.mcp_endpoint.body_timeout == 30.0
    with pytest.raises(ValueError, match="body_timeout"):
        MCPServer("d").http_app(body_timeout=0)
    with pytest.raises(ValueError, match="body_timeout"):
        MCPServer("d").http_app(transport="sse", body_timeout=-1)


# The broker: what waits for a stream that is not read.
def message(size: int = 0) -> dict:
    return {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "x" * size}}


async def test_an_unread_stream_holds_at_most_buffer_messages():
    broker = InProcessBroker(buffer=3)
    inbox = broker.listen("s")
    assert [await broker.publish("s", message()) for _ in range(4)] == [True, True, True, False]
    await inbox.receive()
    assert await broker.publish("s", message())


async def test_an_unread_stream_holds_at_most_max_bytes():
    broker = InProcessBroker(max_bytes=400)
    inbox = broker.listen("s")
    # Each is about 170 bytes of JSON.
    assert await broker.publish("s", message(100))
    assert await broker.publish("s", message(100))
    assert not await broker.publish("s", message(100))
    assert broker.queued_bytes == inbox.queued_bytes == 2 * len(json.dumps(message(100), separators=(",", ":")))
    await inbox.receive()
    assert await broker.publish("s", message(100))


async def test_one_message_larger_than_the_limit_still_reaches_an_empty_inbox():
    broker = InProcessBroker(max_bytes=100)
    inbox = broker.listen("s")
    assert await broker.publish("s", message(), size=5000)
    assert not await broker.publish("s", message(), size=1)
    assert await inbox.receive() == message()
    assert broker.queued_bytes == 0
    assert await broker.publish("s", message(), size=1)


async def test_all_unread_streams_together_hold_at_most_max_total_bytes():
    broker = InProcessBroker(max_bytes=1000, max_total_bytes=1000)
    broker.listen("stalled")
    reader = broker.listen("reader")
    assert await broker.publish("stalled", message(), size=900)
    assert not await broker.publish("reader", message(), size=200)
    assert await broker.publish("reader", message(), size=100)
    await reader.receive()
    assert broker.queued_bytes == 900


async def test_closing_an_inbox_returns_its_bytes_to_the_budget():
    broker = InProcessBroker()
    inbox = broker.listen("s")
    for _ in range(3):
        await broker.publish("s", message(), size=1000)
    assert broker.queued_bytes == 3000
    broker.unlisten("s", inbox)
    assert broker.queued_bytes == 0
    assert not broker.has_listener("s")


async def test_an_ended_stream_is_drained_then_ends():
    broker = InProcessBroker()
    inbox = broker.listen("s")
    await broker.publish("s", message())
    broker.close("s")
    assert await inbox.receive() == message()
    with pytest.raises(anyio.EndOfStream):
        await inbox.receive()
    broker.unlisten("s", inbox)
    assert broker.queued_bytes == 0


async def test_ending_an_old_stream_leaves_the_new_one_open():
    broker = InProcessBroker()
    old = broker.listen("s")
    broker.close("s")
    new = broker.listen("s")
    broker.unlisten("s", old)
    assert broker.has_listener("s")
    assert await broker.publish("s", message())
    assert await new.receive() == message()


def test_broker_limits_are_checked():
    with pytest.raises(ValueError, match="buffer"):
        InProcessBroker(buffer=0)
    with pytest.raises(ValueError, match="max_bytes"):
        InProcessBroker(max_bytes=0)
