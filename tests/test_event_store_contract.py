"""One contract for every EventStore: InMemoryEventStore, and RedisEventStore on a real redis-server.

"Two workers" are two store instances: for Redis, two stores on two clients sharing one
Redis and prefix; in memory, the one store both sides use (a single process).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio

from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.redis_events import RedisEventStore
from mcp_asgi.transports.events import EventStore, InMemoryEventStore, ResumableReply
from tests.redis_server import RedisServer

Pair = tuple[EventStore, EventStore]


def note(n: int, pad: int = 0) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": n, "pad": "x" * pad}}


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Pair]]:
    """`make(**limits)`: the two "workers" of one store configuration."""
    clients: list[Any] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}:"

    def build(**limits: Any) -> Pair:
        if request.param == "memory":
            store = InMemoryEventStore(**limits)
            return store, store
        url = request.getfixturevalue("redis_url")
        pair = []
        for _ in range(2):
            client = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=2.0)
            clients.append(client)
            pair.append(RedisEventStore(client, prefix=prefix, block_slice=0.2, **limits))
        return pair[0], pair[1]

    yield build
    for client in clients:
        await client.aclose()


async def stream_of(store: EventStore, session: str, count: int) -> tuple[str, list[str]]:
    """A new stream of `session` with its priming event and `count` messages; its id and event ids."""
    stream = await store.open_stream(session)
    assert stream is not None
    ids = [await store.append(stream, None)]
    ids += [await store.append(stream, note(n)) for n in range(count)]
    assert None not in ids
    return stream, [i for i in ids if i is not None]


async def test_a_cut_stream_resumes_on_the_other_worker(make: Callable[..., Pair]) -> None:
    a, b = make()
    stream, ids = await stream_of(a, "s1", 3)
    replay = await b.read("s1", ids[0], 0)
    assert replay is not None and not replay.ended
    assert [e.event_id for e in replay.events] == ids[1:]
    assert [e.message for e in replay.events] == [note(0), note(1), note(2)]
    last = await a.append(stream, {"jsonrpc": "2.0", "id": 1, "result": {}})
    await a.end_stream(stream, delivered=False)
    replay = await b.read("s1", ids[2], 0)
    assert replay is not None and replay.ended
    assert [e.event_id for e in replay.events] == [ids[3], last]
    # Read up to the end: nothing more, still ended.
    replay = await b.read("s1", last or "", 0)
    assert replay is not None and replay.ended and replay.events == []


async def test_event_ids_are_unique_and_bound_to_their_session(make: Callable[..., Pair]) -> None:
    a, b = make()
    seen: list[str] = []
    for store, session in [(a, "s1"), (b, "s1"), (a, "s2"), (b, "s2"), (a, "s1")]:
        _, ids = await stream_of(store, session, 2)
        seen += ids
    assert len(seen) == len(set(seen)) == 15
    _, ids = await stream_of(a, "s1", 1)
    assert await b.read("s2", ids[0], 0) is None  # another session's stream
    for bad in ["nonsense", ids[0] + "x", ids[0].rpartition(":")[0] + ":²", "nope:1", ids[1] + "0"]:
        assert await b.read("s1", bad, 0) is None, bad


async def test_a_live_tail_wakes_when_the_other_worker_appends(make: Callable[..., Pair]) -> None:
    a, b = make()
    stream, ids = await stream_of(a, "s1", 0)
    got: list[Any] = []

    async def tail(after: str) -> None:
        started = time.monotonic()
        got.append(await b.read("s1", after, 5.0))
        got.append(time.monotonic() - started)

    async with anyio.create_task_group() as group:
        group.start_soon(tail, ids[0])
        await anyio.sleep(0.3)
        event_id = await a.append(stream, note(7))
    replay, waited = got
    assert replay is not None and [e.event_id for e in replay.events] == [event_id]
    assert waited < 2.0, waited
    # The end wakes a tail too.
    async with anyio.create_task_group() as group:
        got.clear()
        group.start_soon(tail, event_id)
        await anyio.sleep(0.3)
        await a.end_stream(stream, delivered=True)
    assert got[0] is not None and got[0].ended and got[1] < 2.0


async def test_a_quiet_tail_returns_empty_after_its_timeout(make: Callable[..., Pair]) -> None:
    a, b = make()
    _, ids = await stream_of(a, "s1", 1)
    started = time.monotonic()
    replay = await b.read("s1", ids[1], 0.5)
    elapsed = time.monotonic() - started
    assert replay is not None and replay.events == [] and not replay.ended
    assert 0.4 < elapsed < 2.0, elapsed


async def test_forgetting_a_session_drops_its_streams_and_stops_its_tails(make: Callable[..., Pair]) -> None:
    a, b = make()
    _, ids = await stream_of(a, "s1", 1)
    _, others = await stream_of(a, "s2", 1)
    got: list[Any] = []

    async def tail() -> None:
        got.append(await b.read("s1", ids[1], 5.0))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(tail)
        await anyio.sleep(0.2)
        await a.forget_session("s1")
    assert got == [None] and time.monotonic() - started < 2.0
    assert await b.read("s1", ids[0], 0) is None
    assert await b.read("s2", others[0], 0) is not None


async def test_per_stream_count_limit_drops_the_oldest_events(make: Callable[..., Pair]) -> None:
    a, b = make(max_events_per_stream=3)
    _, ids = await stream_of(a, "s1", 4)  # priming + 4: only the last 3 are kept
    assert await b.read("s1", ids[0], 0) is None  # the event after it was dropped
    replay = await b.read("s1", ids[1], 0)  # the oldest kept event follows it: nothing lost
    assert replay is not None and [e.event_id for e in replay.events] == ids[2:]


async def test_per_stream_byte_limit(make: Callable[..., Pair]) -> None:
    a, b = make(max_bytes_per_stream=400, max_total_bytes=10_000)
    stream, ids = await stream_of(a, "s1", 0)
    first = await a.append(stream, note(1, pad=200))
    second = await a.append(stream, note(2, pad=200))  # the first no longer fits beside it
    assert first and second
    assert await b.read("s1", ids[0], 0) is None
    replay = await b.read("s1", first, 0)
    assert replay is not None and [e.event_id for e in replay.events] == [second]
    # An event bigger than a whole stream may hold: the stream is forgotten, not silently gapped.
    assert await a.append(stream, note(3, pad=500)) is None
    assert await b.read("s1", first, 0) is None
    assert await a.append(stream, note(4)) is None


async def test_when_full_a_new_stream_is_not_recorded_rather_than_evicting_a_live_one(
    make: Callable[..., Pair],
) -> None:
    a, b = make(max_streams=2)
    live, ids = await stream_of(a, "s1", 1)
    ended, _ = await stream_of(b, "s1", 1)
    await b.end_stream(ended, delivered=True)
    third = await b.open_stream("s1")  # the ended stream makes room
    assert third is not None
    assert await a.open_stream("s1") is None  # two live streams: the fourth goes unrecorded
    assert await b.read("s1", ids[1], 0) is not None  # the live one was kept
    assert await a.append(live, note(9)) is not None


async def test_total_byte_limit_never_takes_from_another_live_stream(make: Callable[..., Pair]) -> None:
    a, b = make(max_bytes_per_stream=1000, max_total_bytes=1000)
    one, ids_one = await stream_of(a, "s1", 0)
    big = await a.append(one, note(1, pad=700))
    two, ids_two = await stream_of(b, "s1", 0)
    # Stream two cannot take from stream one: it has nothing of its own to drop, so it is forgotten.
    assert await b.append(two, note(2, pad=700)) is None
    assert await a.read("s1", ids_two[0], 0) is None
    replay = await b.read("s1", ids_one[0], 0)
    assert replay is not None and [e.event_id for e in replay.events] == [big]
    # Once stream one ended, a new stream's events may evict it.
    await a.end_stream(one, delivered=True)
    three, _ = await stream_of(b, "s1", 0)
    assert await b.append(three, note(3, pad=700)) is not None
    assert await a.read("s1", ids_one[0], 0) is None


async def test_ended_streams_expire_after_their_retention(make: Callable[..., Pair]) -> None:
    a, b = make(retention=0.3, undelivered_retention=5.0)
    delivered, d_ids = await stream_of(a, "s1", 1)
    undelivered, u_ids = await stream_of(a, "s1", 1)
    await a.end_stream(delivered, delivered=True)
    await a.end_stream(undelivered, delivered=False)
    await anyio.sleep(0.6)
    assert await b.read("s1", d_ids[0], 0) is None
    # The undelivered one is kept longer; reading its end delivers it, which shortens its life.
    replay = await b.read("s1", u_ids[0], 0)
    assert replay is not None and replay.ended
    await anyio.sleep(0.5)
    assert await b.read("s1", u_ids[0], 0) is None


async def test_redis_event_store_unreachable_is_a_503_within_its_timeout(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=1.0)
    store = RedisEventStore(client, prefix="t:", timeout=1.0)
    try:
        stream, ids = await stream_of(store, "s1", 1)
        redis_server.stop()
        calls = [
            lambda: store.open_stream("s1"),
            lambda: store.append(stream, note(1)),
            lambda: store.read("s1", ids[0], 0),
            lambda: store.read("s1", ids[1], 3.0),
            lambda: store.end_stream(stream, delivered=True),
            lambda: store.forget_session("s1"),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(MCPError) as raised:
                await call()
            assert (raised.value.code, raised.value.http_status) == (-32000, 503)
            assert time.monotonic() - started < 2.5
        redis_server.start()
        assert await store.open_stream("s1") is not None  # back by itself
    finally:
        await client.aclose()


async def test_redis_keys_carry_ttls(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    store = RedisEventStore(client, prefix=prefix, retention=5.0)
    try:
        stream, _ = await stream_of(store, "s1", 1)
        await store.end_stream(stream, delivered=True)
        keys = [k async for k in client.scan_iter(prefix + "events:*")]
        for key in keys:
            if key.endswith((":s:" + stream, ":m:" + stream)):
                assert 0 < await client.pttl(key) <= 65_000
        assert len([k for k in keys if stream in k]) == 2
    finally:
        await client.aclose()


def test_options_are_checked() -> None:
    with pytest.raises(ValueError):
        RedisEventStore(max_events_per_stream=1)
    with pytest.raises(ValueError):
        RedisEventStore(block_slice=5.0, timeout=2.0)
    with pytest.raises(RuntimeError):
        anyio.run(RedisEventStore().open_stream, "s1")


async def test_a_reply_outlives_its_event_store_going_away(redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=1.0)
    store = RedisEventStore(client, prefix="t:", timeout=1.0)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    reply = ResumableReply(send, [], True, store, "s1", 1000)
    try:
        assert await reply.early(note(1))
        assert reply.stream_id is not None
        redis_server.stop()
        assert await reply.early(note(2))  # written live, without an id: it cannot be stored
        await reply.finish({"jsonrpc": "2.0", "id": 1, "result": {}})
    finally:
        await client.aclose()
    bodies = [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]
    # The priming event and progress 1 go out in one write, each with its id; then progress 2 and
    # the result without ids (however the writes group them: events wait for the loop's next turn).
    priming, progress_1, progress_2, result = b"".join(bodies).split(b"\n\n")[:4]
    assert bodies[0].startswith(priming) and progress_1 in bodies[0]
    assert priming.startswith(b"id: ") and progress_1.startswith(b"id: ") and b'"progress":1' in progress_1
    assert b'"progress":2' in progress_2 and b"id:" not in progress_2
    assert b'"result"' in result and b"id:" not in result and sent[-1]["more_body"] is False
    assert reply.stream_id is None
