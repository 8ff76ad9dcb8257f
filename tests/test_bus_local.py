"""LocalBus: the one-worker bus delivers to every local subscriber, bounded, and ends cleanly."""

from __future__ import annotations

import anyio
import pytest

from mcp_asgi.bus import LocalBus, backend_unavailable


async def test_publish_reaches_every_subscriber_of_the_channel_only() -> None:
    bus = LocalBus()
    first, second, other = bus.subscribe("session:a"), bus.subscribe("session:a"), bus.subscribe("session:b")
    assert await bus.publish("session:a", {"n": 1}) == 2
    assert await first.receive() == {"n": 1}
    assert await second.receive() == {"n": 1}
    with anyio.move_on_after(0.05) as scope:
        await other.receive()
    assert scope.cancelled_caught


async def test_publish_without_subscribers_reaches_nobody() -> None:
    bus = LocalBus()
    assert await bus.publish("changes", {"x": 1}) == 0
    subscription = bus.subscribe("changes")
    subscription.close()
    assert await bus.publish("changes", {"x": 1}) == 0


async def test_a_subscriber_that_falls_behind_is_dropped_after_draining() -> None:
    bus = LocalBus()
    slow, fast = bus.subscribe("c", buffer=2), bus.subscribe("c", buffer=10)
    for n in range(3):
        await bus.publish("c", {"n": n})
    assert slow.overflowed and not fast.overflowed
    assert [message["n"] async for message in slow] == [0, 1]
    assert await bus.publish("c", {"n": 3}) == 1
    assert [(await fast.receive())["n"] for _ in range(4)] == [0, 1, 2, 3]


async def test_close_of_the_bus_ends_every_iteration() -> None:
    bus = LocalBus()
    subscription = bus.subscribe("c")
    await bus.publish("c", {"n": 1})
    await bus.close()
    assert [message async for message in subscription] == [{"n": 1}]
    with pytest.raises(anyio.EndOfStream):
        await subscription.receive()


async def test_receive_after_close_ends_instead_of_raising_closed() -> None:
    subscription = LocalBus().subscribe("c")
    subscription.close()
    with pytest.raises(anyio.EndOfStream):
        await subscription.receive()


def test_zero_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="buffer"):
        LocalBus().subscribe("c", buffer=0)


def test_unavailable_error_is_a_503() -> None:
    error = backend_unavailable("session store", "timed out")
    assert (error.code, error.http_status) == (-32000, 503)
    assert "session store is unreachable (timed out)" in error.message
