"""The backend: where a server keeps what must outlive one request, and how its workers talk.

One object per server, opened in the server's lifespan (or by the lazy start) and
closed at shutdown: the session store, the event store of resumable SSE replies, the task
store, and the bus that carries messages between workers. `InMemoryBackend` is the
one-process case; `mcp_asgi.redis.RedisBackend` shares them between workers.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Protocol

from mcp_asgi.bus import Bus, LocalBus
from mcp_asgi.transports.events import EventStore, InMemoryEventStore
from mcp_asgi.transports.sessions import InMemorySessionStore, SessionStore

if TYPE_CHECKING:
    from mcp_asgi.tasks.store import TaskStore


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
    # Tasks of the io.modelcontextprotocol/tasks extension (mcp_asgi.tasks).
    tasks: TaskStore

    async def start(self) -> None:
        """Open connections; called by the server's lifespan and by the lazy start."""
        ...

    async def close(self) -> None:
        """Close what `start` opened; `start` may be called again afterwards."""
        ...

    async def claim(self, key: str, token: str, ttl: float) -> bool:
        """Take `key` for `ttl` seconds under `token` unless someone holds it (the one-GET-stream rule)."""
        ...

    async def refresh(self, key: str, token: str, ttl: float) -> bool:
        """Extend a claim this `token` holds; False when it was lost (expired, or taken by another)."""
        ...

    async def release(self, key: str, token: str) -> None:
        """Give up a claim, if `token` still holds it."""
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
        tasks: TaskStore | None = None,
    ) -> None:
        self.worker_id = new_worker_id()
        self.sessions: SessionStore = sessions if sessions is not None else InMemorySessionStore()
        self.events: EventStore = events if events is not None else InMemoryEventStore()
        self.bus: Bus = bus if bus is not None else LocalBus()
        if tasks is None:
            # Here, not at import: `import mcp_asgi` leaves the tasks extension to the server that installs it.
            from mcp_asgi.tasks.store import InMemoryTaskStore

            tasks = InMemoryTaskStore()
        self.tasks: TaskStore = tasks
        self.claims = LocalClaims()

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.close()

    async def claim(self, key: str, token: str, ttl: float) -> bool:
        return self.claims.claim(key, token, ttl)

    async def refresh(self, key: str, token: str, ttl: float) -> bool:
        return self.claims.refresh(key, token, ttl)

    async def release(self, key: str, token: str) -> None:
        self.claims.release(key, token)


class LocalClaims:
    """Claims held in this process: key -> (token, monotonic expiry)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}

    def claim(self, key: str, token: str, ttl: float) -> bool:
        now = time.monotonic()
        held = self._held.get(key)
        if held is not None and held[1] > now and held[0] != token:
            return False
        self._held[key] = (token, now + ttl)
        return True

    def refresh(self, key: str, token: str, ttl: float) -> bool:
        held = self._held.get(key)
        if held is None or held[0] != token:
            return False
        self._held[key] = (token, time.monotonic() + ttl)
        return True

    def release(self, key: str, token: str) -> None:
        held = self._held.get(key)
        if held is not None and held[0] == token:
            del self._held[key]
