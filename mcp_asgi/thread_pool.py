"""The worker threads that run blocking user functions (plain `def` tools, resources, prompts).

`anyio.to_thread.run_sync` costs a loop turn (its checkpoint), a capacity limiter, a cancel
scope and a thread-queue hand-off per call: about 70 us against 40 us for a bare executor,
a quarter of a trivial sync tool call's throughput. This pool keeps what users rely on and
drops the rest:

- at most as many threads as anyio's default thread limiter allows (40 unless the host
  changed it), started on demand, daemons, each leaving after `IDLE_SECONDS` without work;
  calls beyond that wait in order for a free thread;
- the caller's context variables are copied into the call, as anyio does;
- `anyio.from_thread.run()` / `run_sync()` work inside the function: each thread claims
  itself for its loop the way anyio's own workers do (`claim_worker_thread`, whose signature
  every anyio 4 release shares), and each call sees the caller's cancel scope, so
  `from_thread.check_cancelled()` and the coroutines it starts are cancelled with the caller;
- a cancelled caller returns at once (its result is dropped); the thread finishes the
  function and only then takes other work, so the bound counts threads, not callers.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

# Seconds a thread waits for work before it ends (anyio's workers wait 10 s too).
IDLE_SECONDS = 10.0
THREAD_NAME = "mcp-asgi worker thread"

_Job = tuple[contextvars.Context, Callable[[], Any], "asyncio.Future[Any]", Any]


class _AnyioHooks:
    """anyio's thread claim, its thread locals, and a finder of the caller's cancel scope (private names).

    Looked up when the first pool is made, not at import: anyio's asyncio backend is only
    imported once a loop runs.
    """

    def __init__(self) -> None:
        self.claim: Callable[..., Any] | None = None
        self.threadlocals: Any = None
        self.backend: Any = None
        self._states: Any = None
        try:
            from anyio._backends import _asyncio as backend
            from anyio._core._eventloop import claim_worker_thread, get_async_backend, threadlocals
        except ImportError:  # a future anyio without them: from_thread needs an explicit token then
            return
        self.claim = claim_worker_thread
        self.threadlocals = threadlocals
        self.backend = get_async_backend()
        self._states = getattr(backend, "_task_states", None)

    def caller_scope(self) -> Any:
        state = self._states.get(asyncio.current_task()) if self._states is not None else None
        return getattr(state, "cancel_scope", None)


class WorkerPool:
    """Daemon threads running blocking functions for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0  # started and not yet ended
        self._busy = 0  # calls handed over and not yet finished by a thread
        # Finished calls whose callers the loop has not been told of yet (threads append, the loop pops).
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._wake_pending = False
        self._anyio = _AnyioHooks()
        # Handed to from_thread when the caller is in no anyio scope (anyio 4.4 requires one).
        self._root_scope = anyio.CancelScope()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in a worker thread; the caller's cancellation abandons the result."""
        future: asyncio.Future[T] = self._loop.create_future()
        scope = self._anyio.caller_scope() or self._root_scope
        with self._lock:
            self._busy += 1
            start = self._busy > self._threads and self._threads < _limit()
            if start:
                self._threads += 1
        self._jobs.put((contextvars.copy_context(), fn, future, scope))
        if start:
            try:
                threading.Thread(target=self._work, name=THREAD_NAME, daemon=True).start()
            except BaseException:
                future.cancel()  # queued already: whichever thread takes it skips it
                with self._lock:
                    self._threads -= 1
                raise
        return await future

    def _work(self) -> None:
        claim = self._anyio.claim
        if claim is None:
            self._serve()
            return
        with claim(self._anyio.backend, self._loop):
            self._serve()

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # Leave only if the threads that stay can still take every call handed over.
                    if self._busy < self._threads:
                        self._threads -= 1
                        return
                continue
            self._run(*job)

    def _run(
        self, context: contextvars.Context, fn: Callable[[], Any], future: asyncio.Future[Any], scope: Any
    ) -> None:
        result: Any = None
        error: BaseException | None = None
        if not future.cancelled():  # a caller cancelled while queued: never start its function
            locals_ = self._anyio.threadlocals
            if locals_ is not None:
                locals_.current_cancel_scope = scope
            try:
                result = context.run(fn)
            except BaseException as exc:
                error = exc
            finally:
                if locals_ is not None:
                    del locals_.current_cancel_scope
        with self._lock:
            self._busy -= 1
        self._done.append((future, result, error))
        if not self._wake_pending:
            # One wake-up of the loop (a write to its self-pipe) for every result that lands
            # before it runs: under load, several threads finish within one turn of the loop.
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._settle_done)
            except RuntimeError:
                pass  # the loop is closed: nobody waits for these results any more

    def _settle_done(self) -> None:
        self._wake_pending = False  # first: a result landing from now on schedules another pass
        done = self._done
        while done:
            _settle(*done.popleft())


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):
        # A future cannot carry StopIteration (asyncio refuses it), as in anyio.
        wrapped = RuntimeError("the function raised StopIteration")
        wrapped.__cause__ = error
        future.set_exception(wrapped)
    else:
        future.set_exception(error)


def _limit() -> int:
    """anyio's default thread limit for this loop: hosts that raise it (FastAPI apps do) raise ours."""
    tokens = anyio.to_thread.current_default_thread_limiter().total_tokens
    return 1_000_000 if tokens == float("inf") else max(1, int(tokens))


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WorkerPool] = weakref.WeakKeyDictionary()


def pool() -> WorkerPool:
    """The running loop's pool, made on first use."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = WorkerPool(loop)
    return found
