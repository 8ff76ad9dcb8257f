"""The backend: where a server keeps what must outlive one request, and how its workers talk.

One object per server, opened in the server's lifespan (or by the lazy start) and
closed at shutdown: the session store, the event store of resumable SSE replies,
and the bus that carries messages between workers. `InMemoryBackend` is the
one-process case; `mcp_asgi.redis.RedisBackend` shares all three between workers.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from mcp_asgi.bus import Bus, LocalBus
from mcp_asgi.transports.events import EventStore, InMemoryEventStore
from mcp_asgi.transports.sessions import InMemorySessionStore, SessionStore


def new_worker_id() -> str:
    """A random name for this process on the bus: 48 bits, unique among any realistic set of workers."""
    return secrets.token_hex(6)


class Backend(Protocol):
    """What a server needs to answer any request on any of its workers."""

    # Names this worker on the bus (answers to its server-to-client requests are sent to it).
    worker_id: str
    # True when several processes share the backend: a `state_secret` is then required.
    shared: bool
    sessions: SessionStore
    events: EventStore
    bus: Bus

    async def start(self) -> None:
        """Open connections; called by the server's lifespan and by the lazy start."""
        ...

    async def close(self) -> None:
        """Close what `start` opened; `start` may be called again afterwards."""
        ...


class InMemoryBackend:
    """Everything in this process: the default, right for a single worker."""

    shared = False

    def __init__(
        self,
        *,
        sessions: SessionStore | None = None,
        events: EventStore | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.worker_id = new_worker_id()
        self.sessions: SessionStore = sessions if sessions is not None else InMemorySessionStore()
        self.events: EventStore = events if events is not None else InMemoryEventStore()
        self.bus: Bus = bus if bus is not None else LocalBus()

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.close()
