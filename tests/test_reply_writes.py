"""Streamed replies write without extra turns of the event loop, and in order."""

from __future__ import annotations

import asyncio
from typing import Any

from mcp_asgi.transports.events import InMemoryEventStore, ResumableReply
from mcp_asgi.transports.http_reply import JSONOrSSEReply

PROGRESS = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "p", "progress": 1}}
RESULT = {"jsonrpc": "2.0", "id": 1, "result": {"content": []}}


class Wire:
    """An ASGI `send` that keeps what was written."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")


async def count_loop_turns(work: Any) -> int:
    """How many times `work()` gave the event loop a turn before it finished."""
    turns = 0
    running = True

    def tick() -> None:
        nonlocal turns
        if running:
            turns += 1
            loop.call_soon(tick)

    loop = asyncio.get_running_loop()
    loop.call_soon(tick)
    await work()
    running = False
    return turns


async def test_a_resumable_sse_reply_streams_without_yielding_to_the_loop() -> None:
    wire = Wire()
    store = InMemoryEventStore()
    reply = ResumableReply(wire.send, [], True, store, "session-1", 1000)

    async def work() -> None:
        assert await reply.early(PROGRESS)
        await reply.finish(RESULT)

    assert await count_loop_turns(work) == 0
    body = wire.body
    assert body.index(b"notifications/progress") < body.index(b'"id":1')
    assert b"id: 1:0\nretry: 1000\ndata: \n\n" in body  # priming event, then ids 1:1 and 1:2
    assert b"id: 1:1\n" in body and b"id: 1:2\n" in body
    assert wire.messages[-1]["more_body"] is False


async def test_events_before_a_quick_result_go_out_in_one_write() -> None:
    wire = Wire()
    reply = ResumableReply(wire.send, [], True, InMemoryEventStore(), "session-1", 1000)
    assert await reply.early(PROGRESS)
    await reply.finish(RESULT)
    await asyncio.sleep(0)  # nothing is left to flush afterwards
    assert [m["type"] for m in wire.messages] == ["http.response.start", "http.response.body"]
    assert wire.messages[1]["more_body"] is False
    assert b"notifications/progress" in wire.body and b'"id":1' in wire.body


async def test_events_of_a_call_that_waits_are_written_while_it_waits() -> None:
    wire = Wire()
    reply = ResumableReply(wire.send, [], True, InMemoryEventStore(), "session-1", 1000)
    assert await reply.early(PROGRESS)
    assert wire.messages == []  # not yet: the call may finish within this turn of the loop
    await asyncio.sleep(0.01)  # the call waits: its progress must reach the client now
    assert [m["type"] for m in wire.messages] == ["http.response.start", "http.response.body"]
    assert b"notifications/progress" in wire.body and wire.messages[1]["more_body"] is True
    await reply.finish(RESULT)
    assert wire.messages[-1]["more_body"] is False and b'"id":1' in wire.messages[-1]["body"]
    assert len(wire.messages) == 3


async def test_writes_from_two_tasks_stay_whole_and_in_order() -> None:
    wire = Wire()
    reply = ResumableReply(wire.send, [], True, InMemoryEventStore(), "session-1", 1000)
    first = {**PROGRESS, "params": {"progressToken": "p", "progress": 1}}
    second = {**PROGRESS, "params": {"progressToken": "p", "progress": 2}}
    await asyncio.gather(reply.early(first), reply.early(second))
    await reply.finish(RESULT)
    body = wire.body
    assert body.index(b'"progress":1') < body.index(b'"progress":2') < body.index(b'"id":1')


async def test_a_2026_sse_reply_streams_without_yielding_to_the_loop() -> None:
    wire = Wire()
    reply = JSONOrSSEReply(wire.send, [], allow_sse=True)

    async def work() -> None:
        assert await reply.early(PROGRESS)
        await reply.finish(RESULT)

    assert await count_loop_turns(work) == 0
    assert wire.messages[0]["type"] == "http.response.start"


async def test_a_reader_waiting_on_a_stream_wakes_at_its_next_event() -> None:
    store = InMemoryEventStore()
    stream_id = await store.open_stream("session-1")
    assert stream_id is not None
    first = await store.append(stream_id, None)
    assert first is not None
    loop = asyncio.get_running_loop()
    started = loop.time()
    reading = asyncio.ensure_future(store.read("session-1", first, 5.0))
    await asyncio.sleep(0.05)
    assert not reading.done()
    await store.append(stream_id, PROGRESS)
    replay = await reading
    assert replay is not None and [event.message for event in replay.events] == [PROGRESS]
    assert loop.time() - started < 2


async def test_a_2026_reply_sends_a_quick_result_and_its_progress_in_one_write() -> None:
    wire = Wire()
    reply = JSONOrSSEReply(wire.send, [], allow_sse=True)
    assert await reply.early(PROGRESS)
    await reply.finish(RESULT)
    await asyncio.sleep(0)
    assert [m["type"] for m in wire.messages] == ["http.response.start", "http.response.body"]
    assert wire.messages[1]["more_body"] is False
    assert wire.body.index(b"notifications/progress") < wire.body.index(b'"id":1')


async def test_a_2026_reply_writes_progress_while_the_call_waits_and_nothing_once_abandoned() -> None:
    wire = Wire()
    reply = JSONOrSSEReply(wire.send, [], allow_sse=True)
    assert await reply.early(PROGRESS)
    await asyncio.sleep(0.01)
    assert [m["type"] for m in wire.messages] == ["http.response.start", "http.response.body"]
    assert wire.messages[1]["more_body"] is True
    assert await reply.early(PROGRESS)
    reply.abandon()  # the client left before the next turn of the loop
    await asyncio.sleep(0.01)
    await reply.finish(RESULT)
    assert len(wire.messages) == 2


async def test_headers_added_after_a_reply_turned_sse_stay_out_of_its_head() -> None:
    # `answer` adds an error's headers (a 403's WWW-Authenticate) for a JSON reply; an SSE reply's
    # head is fixed when it turns SSE, even though it is written later.
    for make in (
        lambda wire: JSONOrSSEReply(wire.send, [(b"mcp-session-id", b"s")], allow_sse=True),
        lambda wire: ResumableReply(wire.send, [(b"mcp-session-id", b"s")], True, InMemoryEventStore(), "s", 1000),
    ):
        wire = Wire()
        reply = make(wire)
        assert await reply.early(PROGRESS)
        reply.headers = [*reply.headers, (b"www-authenticate", b"Bearer error=insufficient_scope")]
        await reply.finish(RESULT)
        head = dict(wire.messages[0]["headers"])
        assert head[b"content-type"] == b"text/event-stream" and head[b"mcp-session-id"] == b"s"
        assert b"www-authenticate" not in head
