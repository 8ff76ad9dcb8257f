"""The two waiting patterns every stream shares: watching for a disconnect, and keep-alives.

The bottom layer: imports nothing from mcp_asgi but `cancel_scope`, `shutdown` and `thread_pool`
(as low), so the protocol core and the transports can both use it. With `cancel_scope` (whose
`TaskCancelScope` is re-exported here), it is where the request path touches asyncio directly (see
docs/design.md, "One concurrency library"). `run_sync` is where blocking user code leaves the event
loop, through the host's runner when the host set one, else through `thread_pool` (cheaper per call
than anyio's `to_thread`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from mcp_asgi import shutdown, thread_pool
from mcp_asgi.cancel_scope import TaskCancelScope

__all__ = ["DisconnectWatcher", "TaskCancelScope", "forward_with_keepalive", "run_sync", "sync_runner", "write_lock"]

if TYPE_CHECKING:
    from anyio.abc import ObjectReceiveStream

T = TypeVar("T")

# ASGI's `receive`, spelled without importing starlette.
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class DisconnectWatcher:
    """Cancels the block it wraps when the client closes its connection.

        with DisconnectWatcher(receive) as watch:
            ...            # cancelled if the client goes away
        if watch.disconnected: ...

    The watcher is a bare asyncio task with a done-callback, not an anyio task group:
    a task group per request costs about five times as much (150 vs 29 us measured),
    which halved the throughput of a trivial tool call. It never outlives the block.

    The task is only started once the block has run for a while (`WATCH_AFTER`, checked by one
    timer per loop): most calls end sooner, a sync tool's hop to its thread included, and never
    pay for a task, its read and its cancellation (a third of a sync tool call's own cost). A
    client that leaves is noticed that much later, and its call cancelled then; nothing is
    written to it in between (it is gone). The block is a `TaskCancelScope`, shields and all.
    """

    __slots__ = ("_receive", "_on_disconnect", "_scope", "_arming", "_watch", "disconnected")

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None] | None = None) -> None:
        self._receive = receive
        # Runs right before the block is cancelled (e.g. to stop writing to a gone client).
        self._on_disconnect = on_disconnect
        self._scope = TaskCancelScope()
        self._arming: _Arming | None = None
        self._watch: asyncio.Future[None] | None = None
        self.disconnected = False

    def __enter__(self) -> DisconnectWatcher:
        self._scope.__enter__()
        arming = _last_arming
        if arming is None or arming.timer is None or arming.loop is not asyncio.get_running_loop():
            arming = _arming()
        arming.blocks[self] = None
        self._arming = arming
        return self

    def _arm(self) -> None:
        self._arming = None
        if self._scope.cancel_called:
            return
        self._watch = asyncio.ensure_future(_until_disconnect(self._receive))
        self._watch.add_done_callback(self._done)

    def _done(self, watch: asyncio.Future[None]) -> None:
        self._watch = None
        if watch.cancelled() or watch.exception() is not None:
            return  # our own cleanup, or `receive` broke: nothing says the client left
        self.disconnected = True
        if self._on_disconnect is not None:
            self._on_disconnect()
        self._scope.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._arming is not None:
            self._arming.blocks.pop(self, None)
            self._arming = None
        if self._watch is not None:
            self._watch.remove_done_callback(self._done)
            self._watch.cancel()
            self._watch = None
        return self._scope.__exit__(exc_type, exc, tb)


# Seconds a block runs before its disconnect watcher starts (between one and two of them, by one timer).
WATCH_AFTER = 0.05


class _Arming:
    """The watched blocks of one event loop not yet watching, and the one timer that starts them.

    A block is registered on entry and removed on exit (a dict insert and delete). The timer
    runs every `WATCH_AFTER` s while blocks are registered, and starts the watchers of those
    that were registered at its previous run: they have run at least that long.
    """

    __slots__ = ("loop", "blocks", "older", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.blocks: dict[DisconnectWatcher, None] = {}
        self.older: list[DisconnectWatcher] = []
        self.timer: asyncio.TimerHandle | None = None

    def tick(self) -> None:
        self.timer = None
        for watcher in self.older:
            if watcher in self.blocks:
                del self.blocks[watcher]
                watcher._arm()
        self.older = list(self.blocks)
        if self.older:
            self.timer = self.loop.call_later(WATCH_AFTER, self.tick)


_last_arming: _Arming | None = None


def _arming() -> _Arming:
    """The running loop's `_Arming` (the last one used is kept at hand: one loop serves almost always)."""
    global _last_arming
    loop = asyncio.get_running_loop()
    found = _last_arming
    if found is None or found.loop is not loop:
        found = _armings.get(loop)
        if found is None:
            found = _armings[loop] = _Arming(loop)
        _last_arming = found
    if found.timer is None:
        found.timer = loop.call_later(WATCH_AFTER, found.tick)
    return found


_armings: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Arming] = weakref.WeakKeyDictionary()


def write_lock() -> asyncio.Lock:
    """A lock keeping one response's writes in order, for the tasks that write to it.

    Not `anyio.Lock`: its acquire is a checkpoint even when nobody holds it, a turn of the
    event loop per write (two per streamed reply), where asyncio's takes a free lock at once.
    Waiting for a held one is an ordinary await: anyio cancel scopes cancel it as any other.
    """
    return asyncio.Lock()


_SILENCE = object()


async def forward_with_keepalive(
    source: ObjectReceiveStream[T],
    deliver: Callable[[T], Awaitable[Any]],
    keepalive: Callable[[], Awaitable[Any]],
    interval: float,
) -> None:
    """Hand every item of `source` to `deliver` until it ends; `keepalive()` after `interval` s of quiet.

    Only the wait for the next item is timed: a delivery that a slow reader holds up
    past the interval delays the next keep-alive and never loses the item. (anyio's
    memory streams never lose an item to a cancelled `receive`.)

    Also returns when the host server starts shutting down (see `mcp_asgi.shutdown`):
    hosts wait for open streams before they stop, and nothing else would end this one.
    Like the keep-alive timer, shutdown ends only the wait, never a delivery.
    """
    host = shutdown.arm()
    # A memory stream hands over a waiting item without a timer, a cancel scope or a loop turn
    # (its `receive` checkpoints even when an item is there); under load, items usually wait.
    ready: Callable[[], Any] | None = getattr(source, "receive_nowait", None)
    while not host.begun:
        item: Any = _SILENCE
        if ready is not None:
            try:
                item = ready()
            except anyio.WouldBlock:
                pass
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
        if item is _SILENCE:
            with anyio.move_on_after(interval) as wait, host.stream_wait(wait):
                try:
                    item = await source.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
        if item is not _SILENCE:
            await deliver(item)
        elif not host.begun:
            await keepalive()


# How a host wants blocking user code entered, set by the host for the requests it routes to MCP
# (mcp_asgi.django: asgiref's thread-sensitive executor, so Django code keeps its thread and DB
# connection). A context variable rather than a server setting: one server may be mounted in a
# Django host and served elsewhere, and only the Django requests need Django's executor.
sync_runner: ContextVar[Callable[[Callable[[], Any]], Awaitable[Any]] | None] = ContextVar(
    "mcp_asgi.sync_runner", default=None
)


async def run_sync(fn: Callable[[], T]) -> T:
    """Run a blocking user function off the event loop: in the host's runner, else a worker thread."""
    runner = sync_runner.get()
    if runner is None:
        return await thread_pool.pool().run(fn)
    result: T = await runner(fn)
    return result
