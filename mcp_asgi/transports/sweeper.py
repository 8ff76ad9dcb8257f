"""Background expiry of idle sessions, for stores that otherwise expire them only when read.

A session nobody touches again would stay in an in-memory store until the
process ends. The sweeper calls each store's `sweep()` every `sweep_interval`
seconds while the server's lifespan runs; when nobody runs the lifespan (no user
lifespan, a host that does not wire it), the first session created starts it
(`ensure_running`), quietly: there is nothing for the user to fix. Stores without
`sweep()` (one with a TTL of its own, like Redis) are left alone. Correctness never
depends on it: stores still check expiry when a record is read and reclaim
expired records before refusing a new session.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

logger = logging.getLogger("mcp_asgi")

# How often to look when a store offers `sweep()` but names no interval.
DEFAULT_SWEEP_INTERVAL = 60.0


class SessionSweeper:
    """Calls `sweep()` on the session stores of one server, in the background, while it runs."""

    def __init__(self) -> None:
        # Weak: an app that was built and dropped must not keep its store alive through the server.
        self._stores: weakref.WeakSet[Any] = weakref.WeakSet()
        self._strong: list[Any] = []  # stores that cannot be weakly referenced
        # How many runs (one per event loop) are sweeping now.
        self.active = 0
        # Lifespans running on each event loop, and the sweep started without one.
        self._lifespans: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()
        self._lazy: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def watch(self, store: Any) -> None:
        """Sweep `store` from now on, if it has a `sweep()` (stores with their own TTL have none)."""
        if not callable(getattr(store, "sweep", None)):
            return
        try:
            self._stores.add(store)
        except TypeError:
            if not any(kept is store for kept in self._strong):
                self._strong.append(store)

    def stores(self) -> list[Any]:
        return [*self._stores, *self._strong]

    def interval(self) -> float:
        """The shortest interval any watched store asks for."""
        intervals = [getattr(store, "sweep_interval", DEFAULT_SWEEP_INTERVAL) for store in self.stores()]
        return min((i for i in intervals if i is not None and i > 0), default=DEFAULT_SWEEP_INTERVAL)

    async def sweep(self) -> int:
        """Sweep every watched store once; how many sessions were dropped."""
        dropped = 0
        for store in self.stores():
            if getattr(store, "sweep_interval", DEFAULT_SWEEP_INTERVAL) is None:
                continue  # nothing in it expires
            try:
                dropped += await store.sweep() or 0
            except Exception:
                # A shared store may be briefly unreachable; the next round tries again.
                logger.exception("Sweeping idle sessions from %r failed", store)
        return dropped

    def ensure_running(self) -> None:
        """Sweep on this event loop from now on, if no lifespan does (called when a session is created).

        A bare asyncio task, like `concurrency.DisconnectWatcher`: anyio starts tasks only
        in a task group, and without a lifespan none lives long enough. It ends when a
        lifespan starts on this loop (which sweeps itself) or when the loop closes.
        """
        loop = asyncio.get_running_loop()
        if self._lifespans.get(loop) or loop in self._lazy or not self.stores():
            return
        task = self._lazy[loop] = loop.create_task(self._loop(), name="mcp-asgi session sweeper")
        # Forget the task (and with it the loop it holds) once it ends.
        task.add_done_callback(lambda _: self._lazy.pop(loop, None) if self._lazy.get(loop) is task else None)

    def _stop_lazy(self, loop: asyncio.AbstractEventLoop) -> None:
        task = self._lazy.pop(loop, None)
        if task is not None:
            task.cancel()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sweep in the background until the block exits (the server's lifespan)."""
        loop = asyncio.get_running_loop()
        # This run sweeps from now on; a lazily started sweep would only repeat it.
        self._lifespans[loop] = self._lifespans.get(loop, 0) + 1
        self._stop_lazy(loop)
        try:
            async with self._sweeping():
                yield
        finally:
            self._lifespans[loop] -= 1

    @asynccontextmanager
    async def _sweeping(self) -> AsyncIterator[None]:
        error: BaseException | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._loop)
            try:
                yield
            except BaseException as exc:
                # Raised again below: out of the task group it would come out wrapped in an
                # ExceptionGroup, and the host is owed its lifespan's original exception.
                error = exc
            finally:
                group.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _loop(self) -> None:
        self.active += 1
        try:
            while True:
                await anyio.sleep(self.interval())
                dropped = await self.sweep()
                if dropped:
                    logger.debug("Dropped %d idle sessions", dropped)
        finally:
            self.active -= 1
