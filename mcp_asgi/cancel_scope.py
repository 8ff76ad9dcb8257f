"""Cancelling one task's block from anywhere on its loop, now or at a deadline, keeping only our own cancellation.

Every per-request cancellation around user code goes through `TaskCancelScope`: a 2025 session
call's (`notifications/cancelled`, DELETE), a disconnect's (`concurrency.DisconnectWatcher`) and a
call's graceful period at shutdown (`shutdown._Grace`). The request body's read deadline
(`transports.http_common.read_body`) keeps a cheaper mechanism of its own: no user code runs in
that read, so there is no shield to honour, and a scope there cost 2% of a trivial call.

Not anyio scopes: a request runs in a fresh task, and anyio's first scope in a task costs its
bookkeeping of the task (4% of a trivial call), each scope about 7 us to enter and leave. These
cost nothing until they are cancelled, and then honour what an anyio scope would have (see
docs/design.md, "One concurrency library").

The bottom layer: imports nothing from mcp_asgi but `thread_pool` (anyio's record of a task's
scopes, in one place).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any

from mcp_asgi.thread_pool import anyio_scope

__all__ = ["TaskCancelScope"]


class TaskCancelScope:
    """A cancel scope for the task that enters it, costing nothing until it is cancelled.

        with TaskCancelScope() as scope:   # scope.cancel() may come from any task of the loop
            scope.cancel_at(deadline)      # or later, by a timer of its own
            ...
        if scope.cancelled_caught: ...

    A cancel cancels the task the way `asyncio.timeout` does, and only our own cancellation is
    swallowed on the way out (on Python 3.10, which does not count cancellations, any
    cancellation arriving once ours was delivered is taken for ours). It honours what an anyio
    scope would have: while the task is inside a shielded anyio scope entered within this one,
    the cancellation waits, retried each turn of the loop as anyio does; one cancelled before
    the block is entered lands at the block's first wait. A cancel or a timer that comes after
    the block ended does nothing.
    """

    __slots__ = ("_task", "_outer", "_handle", "_cancels", "_exited", "cancel_called", "cancelled_caught")

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None
        self._outer: Any = None  # the anyio scope the task was in on entry: shields above it are not ours
        # The deadline's timer until it is due, then the retry while a shield holds the cancel.
        self._handle: asyncio.Handle | None = None
        self._cancels = 0
        self._exited = False
        self.cancel_called = False
        self.cancelled_caught = False

    def __enter__(self) -> TaskCancelScope:
        self._task = task = asyncio.current_task()
        self._outer = anyio_scope(task)
        if self.cancel_called:
            self._deliver()
        return self

    def cancel(self) -> None:
        """Cancel the block now (or at its first wait, if it is not entered yet)."""
        if self.cancel_called:
            return
        self.cancel_called = True
        handle = self._handle
        if handle is not None:  # a deadline not yet due: this cancel came first
            self._handle = None
            handle.cancel()
        if self._task is not None:
            self._deliver()

    def cancel_at(self, when: float) -> None:
        """Cancel the block at event loop time `when`, replacing any earlier deadline; a timer only now."""
        if self.cancel_called or self._exited:
            return
        if self._handle is not None:
            self._handle.cancel()
        loop = self._task.get_loop() if self._task is not None else asyncio.get_running_loop()
        self._handle = loop.call_at(when, self._due)

    @property
    def cancel_delivered(self) -> bool:
        """Whether the cancellation reached the task (not still held by a shield when the block ended)."""
        return self._cancels > 0

    def _due(self) -> None:
        self._handle = None  # running now: nothing left to cancel
        self.cancel()

    def _deliver(self) -> None:
        self._handle = None
        task = self._task
        if task is None or task.done():
            return
        if _shielded(task, self._outer):
            self._handle = task.get_loop().call_soon(self._deliver)
            return
        task.cancel()
        self._cancels += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        task, self._task = self._task, None
        self._exited = True
        if not self._cancels:
            return False
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: count the cancellations that remain
        remaining = 0
        if uncancel is not None:
            for _ in range(self._cancels):
                remaining = uncancel()
        # Swallow only our own cancellation; one from elsewhere as well goes on up.
        self.cancelled_caught = exc_type is not None and issubclass(exc_type, asyncio.CancelledError) and remaining == 0
        return self.cancelled_caught


def _shielded(task: asyncio.Task[Any], outer: Any) -> bool:
    """Whether `task` is inside a shielded anyio scope that it entered within `outer`."""
    scope = anyio_scope(task)
    while scope is not None and scope is not outer:
        if scope.shield:
            return True
        scope = getattr(scope, "_parent_scope", None)
    return False
