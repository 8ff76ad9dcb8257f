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
