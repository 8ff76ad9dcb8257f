"""RedisBus against a real redis-server: two buses on one server stand for two workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio

from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.redis_bus import RedisBus
from tests.redis_server import RedisServer


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client for looking at the server (PUBSUB NUMSUB, CLIENT LIST)."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def workers(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    """Two started buses on the same server: worker A and worker B."""
    a, b = RedisBus(redis_server.url, prefix="t:"), RedisBus(redis_server.url, prefix="t:")
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def numsub(admin: redis.asyncio.Redis, name: str) -> int:
    [(_, count)] = await admin.pubsub_numsub(name)
    return int(count)


async def receive(subscription: Any, timeout: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        return await subscription.receive()


async def publish_until_heard(bus: RedisBus, channel: str, message: dict[str, Any], deadline: float = 10.0) -> None:
    """Publish until some worker receives it (while Redis or the subscriber reconnects, PUBLISH reaches 0)."""
    with anyio.fail_after(deadline):
        while True:
            try:
                if await bus.publish(channel, message) > 0:
                    return
            except MCPError:
                pass  # the publisher's own pool is still reconnecting
            await anyio.sleep(0.05)


async def test_two_workers_exchange_messages_on_several_channels(workers: tuple[RedisBus, RedisBus]) -> None:
    a, b = workers
    session = await b.listen("session:s1")
    inbox = await b.listen("worker:b")
    changes = await a.listen("changes")

    assert await a.publish("session:s1", {"n": 1, "text": "h\u00e9llo \ud800"}) == 1
    assert await a.publish("worker:b", {"n": 2}) == 1
    assert await b.publish("changes", {"n": 3}) == 1

    # The lone surrogate survives the trip: encode() escapes it, json.loads restores it.
    assert await receive(session) == {"n": 1, "text": "h\u00e9llo \ud800"}
    assert await receive(inbox) == {"n": 2}
    assert await receive(changes) == {"n": 3}
    # Nothing crossed into another channel.
    for subscription in (session, inbox, changes):
        with anyio.move_on_after(0.1):
            extra = await subscription.receive()
            pytest.fail(f"unexpected extra message {extra!r} on {subscription.channel}")
    assert a.received == 1 and b.received == 2


async def test_local_subscribers_share_one_redis_subscription(
    workers: tuple[RedisBus, RedisBus], admin: redis.asyncio.Redis
) -> None:
    a, b = workers
    subscriptions = [await b.listen("changes") for _ in range(3)]

    assert await numsub(admin, "t:changes") == 1
    # PUBLISH counts Redis subscribers: one worker, however many local streams.
    assert await a.publish("changes", {"kind": "list_changed"}) == 1
    for subscription in subscriptions:
        assert await receive(subscription) == {"kind": "list_changed"}


async def test_closing_the_last_local_subscriber_unsubscribes(
    workers: tuple[RedisBus, RedisBus], admin: redis.asyncio.Redis
) -> None:
    a, b = workers
    first, second = await b.listen("session:s"), await b.listen("session:s")

    first.close()
    assert await a.publish("session:s", {"n": 1}) == 1
    assert await receive(second) == {"n": 1}

    # Leave and come back while the UNSUBSCRIBE is on its way: `ready` must wait for the new
    # SUBSCRIBE's reply, not trust the confirmation from before.
    second.close()
    for _ in range(3):
        await asyncio.sleep(0)  # let the reader send UNSUBSCRIBE
    third = await b.listen("session:s")
    assert await a.publish("session:s", {"n": 2}) == 1
    assert await receive(third) == {"n": 2}

    third.close()
    with anyio.fail_after(5):
        while await numsub(admin, "t:session:s") != 0:
            await anyio.sleep(0.02)
    assert await a.publish("session:s", {"n": 3}) == 0


async def test_slow_subscriber_is_dropped_without_blocking_the_others(workers: tuple[RedisBus, RedisBus]) -> None:
    a, b = workers
    slow = await b.listen("changes", buffer=2)
    fast = await b.listen("changes", buffer=64)

    for n in range(10):
        assert await a.publish("changes", {"n": n}) == 1
    # The fast reader gets every message in order while the slow one never reads.
    assert [(await receive(fast))["n"] for _ in range(10)] == list(range(10))

    # The slow one keeps what fitted, then its stream ends: no gap is silently skipped.
    assert [message["n"] async for message in slow] == [0, 1]
    assert slow.overflowed and not fast.overflowed
    assert b.dropped == 1  # the message that overflowed it; later ones were no longer offered to it
    # The channel is still subscribed for the fast reader.
    assert await a.publish("changes", {"n": 10}) == 1
    assert await receive(fast) == {"n": 10}


async def test_publish_without_subscriber_reaches_nobody(workers: tuple[RedisBus, RedisBus]) -> None:
    a, b = workers
    assert await a.publish("session:nobody", {"n": 1}) == 0
    await b.listen("session:other")
    assert await a.publish("session:nobody", {"n": 2}) == 0


async def test_publish_fails_with_503_promptly_when_redis_is_down(
    workers: tuple[RedisBus, RedisBus], redis_server: RedisServer
) -> None:
    a, b = workers
    subscription = await b.listen("session:s")
    redis_server.stop()

    started = time.monotonic()
    with pytest.raises(MCPError) as caught:
        await a.publish("session:s", {"n": 1})
    elapsed = time.monotonic() - started
    assert elapsed < 2, elapsed
    assert caught.value.code == -32000 and caught.value.http_status == 503
    assert "message bus (Redis)" in caught.value.message
    assert "127.0.0.1" not in caught.value.message  # the client is not told where Redis lives

    # Subscribing to something new cannot be confirmed either: a 503, not a hang.
    b.subscribe("session:new")
    started = time.monotonic()
    with pytest.raises(MCPError) as caught:
        await b.ready("session:new", timeout=0.5)
    assert time.monotonic() - started < 2 and caught.value.http_status == 503

    # The local subscription stays open: nothing ends it while Redis is away.
    with anyio.move_on_after(0.3):
        await subscription.receive()
        pytest.fail("the subscription yielded or ended while Redis was down")
    assert not subscription.overflowed


async def test_publish_fails_with_503_when_redis_hangs(
    workers: tuple[RedisBus, RedisBus], admin: redis.asyncio.Redis
) -> None:
    a, b = workers
    await b.listen("session:s")
    await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    started = time.monotonic()
    with pytest.raises(MCPError) as caught:
        await a.publish("session:s", {"n": 1})
    assert time.monotonic() - started < 2 and caught.value.http_status == 503
    assert "no answer within" in caught.value.message


async def test_bus_resubscribes_by_itself_after_redis_restarts(
    workers: tuple[RedisBus, RedisBus], redis_server: RedisServer
) -> None:
    a, b = workers
    session = await b.listen("session:s")
    changes = await b.listen("changes")
    assert b.connections == 1

    redis_server.stop()
    with anyio.fail_after(5):
        while b.connected:
            await anyio.sleep(0.02)
    redis_server.start()  # same port

    # The subscriber does nothing: its worker reconnects and re-subscribes both channels.
    await publish_until_heard(a, "session:s", {"n": 1})
    assert await receive(session) == {"n": 1}
    assert await a.publish("changes", {"n": 2}) == 1
    assert await receive(changes) == {"n": 2}
    assert b.connections == 2


async def test_silent_connection_is_pinged_then_replaced(
    redis_server: RedisServer, admin: redis.asyncio.Redis
) -> None:
    bus = RedisBus(redis_server.url, prefix="t:", health_interval=0.2)
    await bus.start()
    try:
        session = await bus.listen("session:s")
        # An idle but healthy connection is kept: each silence gets a PING, and the PONG counts.
        await anyio.sleep(1.0)
        assert bus.connections == 1 and bus.connected
        # A paused server holds the PING unanswered, as a dead peer or a cut network would.
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        with anyio.fail_after(5):
            while bus.connected:
                await anyio.sleep(0.02)
        await publish_until_heard(bus, "session:s", {"n": 1})
        assert await receive(session) == {"n": 1}
        assert bus.connections >= 2
    finally:
        await bus.close()


def test_a_subscription_counts_as_confirmed_only_after_the_last_reply() -> None:
    # The real race (UNSUBSCRIBE, then SUBSCRIBE again, before either reply) is too narrow to hit on
    # demand against a server; the bookkeeping that settles it is fed the replies directly.
    bus = RedisBus("redis://127.0.0.1:1/0", prefix="t:")
    bus._sent, bus._awaiting = {"t:c"}, {"t:c": 3}  # SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE sent
    bus._handle([b"subscribe", b"t:c", 1])
    bus._handle([b"unsubscribe", b"t:c", 0])
    assert "t:c" not in bus._confirmed  # Redis is not yet known to hold the last SUBSCRIBE
    bus._handle([b"subscribe", b"t:c", 1])
    assert "t:c" in bus._confirmed and not bus._awaiting


async def test_bus_reconnects_when_redis_drops_its_connection(
    workers: tuple[RedisBus, RedisBus], admin: redis.asyncio.Redis
) -> None:
    a, b = workers
    session = await b.listen("session:s")
    killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed == 1  # b's one pub/sub connection (a has none: it subscribes to nothing)

    await publish_until_heard(a, "session:s", {"n": 1})
    assert await receive(session) == {"n": 1}
    assert b.connections == 2


async def test_close_ends_every_subscription(redis_server: RedisServer) -> None:
    bus = RedisBus(redis_server.url, prefix="t:")
    await bus.start()
    subscriptions = [await bus.listen("session:s"), await bus.listen("changes")]
    waiting = bus.subscribe("session:pending")

    await bus.close()
    for subscription in [*subscriptions, waiting]:
        with anyio.fail_after(1):
            assert [message async for message in subscription] == []
    with pytest.raises(MCPError) as caught:
        await bus.publish("changes", {"n": 1})
    assert caught.value.http_status == 503
    with pytest.raises(MCPError):
        bus.subscribe("changes")
    await bus.close()  # twice is harmless


async def test_no_task_or_connection_is_left_behind(redis_server: RedisServer, admin: redis.asyncio.Redis) -> None:
    async def clients() -> int:
        return len(await admin.client_list())

    before_clients = await clients()  # the admin connection itself
    before_tasks = asyncio.all_tasks()

    a, b = RedisBus(redis_server.url, prefix="t:"), RedisBus(redis_server.url, prefix="t:")
    await a.start()
    await b.start()
    subscriptions = [await b.listen(f"session:{n}") for n in range(20)]
    for n in range(20):
        assert await a.publish(f"session:{n}", {"n": n}) == 1
    for n, subscription in enumerate(subscriptions):
        assert await receive(subscription) == {"n": n}
    during = await clients()
    # One pub/sub connection per worker (both read: a's reader is connected with no channels),
    # plus the publishing pool's connection of a.
    assert during - before_clients == 3
    await a.close()
    await b.close()

    with anyio.fail_after(5):
        while await clients() != before_clients:
            await anyio.sleep(0.02)
    assert asyncio.all_tasks() == before_tasks


async def test_a_given_client_is_shared_and_left_open(redis_server: RedisServer, admin: redis.asyncio.Redis) -> None:
    # Configured as RedisBackend configures its pool: decoded replies, a bounded blocking pool.
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        redis_server.url, max_connections=2, timeout=1.0, socket_timeout=1.0, decode_responses=True
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    bus = RedisBus(client, prefix="t:")
    await bus.start()
    subscription = await bus.listen("changes")
    assert await bus.publish("changes", {"n": 1}) == 1
    assert await receive(subscription) == {"n": 1}
    # Bytes that are not UTF-8 cost one ignored message, not the decoding client's connection.
    assert await admin.publish("t:changes", b"\xff\xfe") == 1
    assert await bus.publish("changes", {"n": 2}) == 1
    assert await receive(subscription) == {"n": 2}
    assert bus.malformed == 1 and bus.connections == 1
    await bus.close()
    assert await client.ping()  # the caller's pool still works after the bus is gone
    await client.aclose()
    await pool.disconnect()


async def test_messages_that_are_not_json_objects_are_ignored(
    workers: tuple[RedisBus, RedisBus], admin: redis.asyncio.Redis
) -> None:
    a, b = workers
    subscription = await b.listen("changes")
    assert await admin.publish("t:changes", b"not json") == 1
    assert await admin.publish("t:changes", b"[1, 2]") == 1
    assert await admin.publish("t:changes", b"\xff\xfe") == 1
    assert await a.publish("changes", {"n": 1}) == 1
    assert await receive(subscription) == {"n": 1}
    assert b.malformed == 3 and b.connections == 1


async def test_ready_needs_start_and_a_local_subscriber(redis_server: RedisServer) -> None:
    bus = RedisBus(redis_server.url)
    bus.subscribe("changes")
    with pytest.raises(RuntimeError, match="start"):
        await bus.ready("changes")
    await bus.start()
    with pytest.raises(ValueError, match="no local subscription"):
        await bus.ready("elsewhere")
    await bus.close()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="`timeout`"):
        RedisBus("redis://127.0.0.1:1/0", timeout=0)
    with pytest.raises(ValueError, match="`backoff`"):
        RedisBus("redis://127.0.0.1:1/0", backoff=(2.0, 1.0))
    with pytest.raises(TypeError, match="`prefix`"):
        RedisBus("redis://127.0.0.1:1/0", prefix=None)  # type: ignore[arg-type]
