"""Which backend a server's apps use, and starting and closing those backends with the server.

One process, no configuration: an `InMemoryBackend` per app. `backend=` (on the app or the
server) or the `MCP_ASGI_REDIS_URL` variable choose a shared one. A shared backend needs the
2026-07-28 request-state key shared too, so starting without one fails with what to set.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from typing import Any

from mcp_asgi.backend import Backend, InMemoryBackend
from mcp_asgi.protocol.mrtr import STATE_SECRET_ENV

logger = logging.getLogger("mcp_asgi")

REDIS_URL_ENV = "MCP_ASGI_REDIS_URL"


class MissingStateSecret(ValueError):
    """A shared backend was configured without a state secret every worker shares."""


def missing_secret_message() -> str:
    return (
        "a shared backend (Redis) needs the same state secret on every worker: "
        f"set {STATE_SECRET_ENV} or pass MCPServer(state_secret=...)"
    )


def check_secret(backend: Backend, secret_given: bool) -> None:
    """Refuse a shared backend when each worker would sign 2026-07-28 request state with its own random key."""
    if getattr(backend, "shared", False) and not (secret_given or os.environ.get(STATE_SECRET_ENV)):
        raise MissingStateSecret(missing_secret_message())


def backend_from_environment() -> Backend | None:
    """`RedisBackend(MCP_ASGI_REDIS_URL)` when the variable is set (redis is imported only then)."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        return None
    from mcp_asgi.redis import RedisBackend

    return RedisBackend(url)


class Backends:
    """The backends of one server's apps: started together (lifespan or lazy start), closed together.

    Starting one also links the server's `ChangeHub` to its bus, so list changes and resource
    updates raised on any worker reach this worker's listeners.
    """

    def __init__(self, hub: Any) -> None:
        self._hub = hub
        # Weak: an app that was built and dropped must not keep its backend alive through the server.
        self._items: weakref.WeakSet[Any] = weakref.WeakSet()
        self._strong: list[Backend] = []  # backends that cannot be weakly referenced
        self._started: list[Backend] = []
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The loop on which every backend is open, once it is: `started` runs on every request.
        self._ready_on: asyncio.AbstractEventLoop | None = None

    def add(self, backend: Backend) -> None:
        self._ready_on = None
        try:
            self._items.add(backend)
        except TypeError:
            if not any(item is backend for item in self._strong):
                self._strong.append(backend)

    def __iter__(self) -> Any:
        return iter([*self._items, *self._strong])

    @property
    def started(self) -> bool:
        """True when every backend is open on the running loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._ready_on is loop:
            return True
        if self._loop is loop and all(any(item is b for item in self._started) for b in self):
            self._ready_on = loop
            return True
        return False

    async def start(self, secret_given: bool) -> None:
        """Open every backend not open yet; idempotent, safe from concurrent first requests."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a test's, or a restarted server): what was opened on the old one is gone.
            self._started, self._loop, self._lock = [], loop, None
            self._hub.forget_closed_loops()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            for backend in list(self):
                if any(item is backend for item in self._started):
                    continue
                check_secret(backend, secret_given)
                await backend.start()
                await self._hub.connect(backend.bus, backend.worker_id)
                self._started.append(backend)

    async def close(self) -> None:
        self._ready_on = None
        started, self._started = self._started, []
        await self._hub.disconnect()
        for backend in reversed(started):
            try:
                await backend.close()
            except Exception:
                logger.exception("Closing the backend %r failed", backend)


def default_backend(session_store: Any = None, event_store: Any = None) -> InMemoryBackend:
    return InMemoryBackend(sessions=session_store, events=event_store)
