"""Cross-worker messages: the `Bus` a backend offers, and `LocalBus`, its one-process form.

A bus carries small JSON-able dicts on named channels (`session:{sid}`, `worker:{id}`,
`changes`, `sse:{sid}`; the bus adds its own prefix). Each worker reads a channel through
local subscriptions, each a bounded queue: a shared bus (Redis) holds one connection per
worker and fans what it reads out to those queues, never one connection per stream.

A subscriber that falls `buffer` messages behind is dropped (its iteration ends and
`overflowed` is True) rather than let the queue grow or silently skip a message: the
stream it feeds ends, and the client reconnects (and resumes where it can).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import anyio

from mcp_asgi.protocol.jsonrpc import MCPError

# JSON-RPC's implementation-defined server error range, as for a full session store.
BACKEND_UNAVAILABLE = -32000


def backend_unavailable(what: str, detail: str = "") -> MCPError:
    """The error every backend part raises when its shared service cannot be reached: a 503, never a hang."""
    suffix = f" ({detail})" if detail else ""
    return MCPError(
        BACKEND_UNAVAILABLE,
        f"Service unavailable: the {what} is unreachable{suffix}; try again shortly",
        http_status=503,
    )


class Subscription(Protocol):
    """One local reader of a channel: a bounded queue of the messages published on it.

    `receive()` raises `anyio.EndOfStream` once the subscription is closed (by `close()`,
    by overflow, or by the bus closing) and what was queued before is drained; `async for`
    stops there. `close()` is synchronous so it is safe in a `finally` of a cancelled task;
    closing the last local subscriber of a channel unsubscribes the worker from it.
    """

    channel: str
    # True when the bus dropped this subscriber for falling `buffer` messages behind.
    overflowed: bool

    async def receive(self) -> dict[str, Any]: ...

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class Bus(Protocol):
    """Messages between the workers that share a backend, fanned out to local subscriptions."""

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Send `message` to every subscriber of `channel`; how many receivers it reached (0: nobody listens).

        The count's unit is the bus's own (local subscriptions for `LocalBus`, workers for a
        Redis bus); only 0 versus more is portable. A shared bus that cannot be reached raises
        `backend_unavailable(...)` (an `MCPError` with HTTP status 503) within its timeout.
        Messages must be JSON-serializable; receivers treat them as read-only.
        """
        ...

    def subscribe(self, channel: str, *, buffer: int = 256) -> Subscription:
        """A new local subscription to `channel`, holding at most `buffer` unread messages."""
        ...

    async def start(self) -> None:
        """Open what the bus needs (connections, its reader task); called by the backend's `start()`."""
        ...

    async def close(self) -> None:
        """Close every subscription (their iteration ends) and release connections."""
        ...


class LocalSubscription:
    """A `Subscription` fed by `LocalFanout`: an anyio memory stream of `buffer` messages."""

    __slots__ = ("channel", "overflowed", "_fanout", "_send", "_receive")

    def __init__(self, fanout: LocalFanout, channel: str, buffer: int) -> None:
        self.channel = channel
        self.overflowed = False
        self._fanout = fanout
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](buffer)

    def offer(self, message: dict[str, Any]) -> bool:
        """Queue `message` without waiting; a full queue drops this subscriber (False)."""
        try:
            self._send.send_nowait(message)
        except anyio.WouldBlock:
            self.overflowed = True
            self.end()
            return False
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    def end(self) -> None:
        """No more messages: the reader drains what is queued, then gets `EndOfStream`."""
        self._send.close()
        self._fanout.remove(self)

    async def receive(self) -> dict[str, Any]:
        try:
            return await self._receive.receive()
        except anyio.ClosedResourceError:
            raise anyio.EndOfStream from None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._send.close()
        self._receive.close()
        self._fanout.remove(self)


class LocalFanout:
    """The local subscriptions of each channel, and delivery to them; the part every bus shares.

    `on_first(channel)` runs when a channel gains its first local subscriber and
    `on_last(channel)` when it loses its last one (a Redis bus SUBSCRIBEs and UNSUBSCRIBEs
    there); both are plain callables, so closing a subscription never awaits.
    """

    def __init__(self, on_first: Any = None, on_last: Any = None) -> None:
        self._channels: dict[str, set[LocalSubscription]] = {}
        self._on_first = on_first
        self._on_last = on_last

    def channels(self) -> list[str]:
        """The channels that have at least one local subscriber (what a reconnect re-subscribes)."""
        return list(self._channels)

    def add(self, channel: str, buffer: int) -> LocalSubscription:
        if buffer < 1:
            raise ValueError("`buffer` must be at least 1 message")
        subscription = LocalSubscription(self, channel, buffer)
        subscribers = self._channels.get(channel)
        if subscribers is None:
            subscribers = self._channels[channel] = set()
            if self._on_first is not None:
                self._on_first(channel)
        subscribers.add(subscription)
        return subscription

    def remove(self, subscription: LocalSubscription) -> None:
        subscribers = self._channels.get(subscription.channel)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._channels[subscription.channel]
            if self._on_last is not None:
                self._on_last(subscription.channel)

    def deliver(self, channel: str, message: dict[str, Any]) -> int:
        """Hand `message` to every local subscriber of `channel`; how many took it."""
        subscribers = self._channels.get(channel)
        if not subscribers:
            return 0
        # A copy: `offer` may drop an overflowing subscriber from the set while we walk it.
        return sum(subscription.offer(message) for subscription in list(subscribers))

    def end_all(self) -> None:
        """End every subscription (readers drain, then stop)."""
        for subscribers in list(self._channels.values()):
            for subscription in list(subscribers):
                subscription.end()


class LocalBus:
    """The bus of a single worker: publishing hands the message straight to this process's subscribers."""

    def __init__(self) -> None:
        self._fanout = LocalFanout()

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        return self._fanout.deliver(channel, message)

    def subscribe(self, channel: str, *, buffer: int = 256) -> LocalSubscription:
        return self._fanout.add(channel, buffer)

    async def start(self) -> None:
        """Nothing to open in one process."""

    async def close(self) -> None:
        self._fanout.end_all()
