"""The worker threads that run blocking user functions (plain `def` tools, resources, prompts).

`anyio.to_thread.run_sync` costs a loop turn (its checkpoint), a capacity limiter, a cancel
scope and a thread-queue hand-off per call: about 70 us against 40 us for a bare executor,
a quarter of a trivial sync tool call's throughput. This pool keeps what users rely on and
drops the rest:

- at most as many threads as anyio's default thread limiter allows (40 unless the host
  changed it), started on demand, daemons, each leaving after `IDLE_SECONDS` without work;
  calls beyond that wait in order for a free thread;
- a call goes to a thread that is already awake when there is one: it takes the call as soon
  as it is done with its current one. When none is, one is woken at the end of the loop's
  turn, after every request of that turn has queued its call. A burst of quick calls (the
  common sync tool) is served by one thread, one GIL hand-over for many calls, instead of
  waking a thread per call that all fight for the GIL on a core. If the awake threads are
  busy with slow calls (blocking I/O), a call waiting `STALL_SECONDS` wakes more threads, so
  slow calls still run side by side;
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
import functools
import sys
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
# Seconds a call may wait for the awake threads before more are woken (checked once a period:
# a call stuck behind a slow one waits between one and two periods). Never below the GIL's
# switch interval (5 ms): an awake thread may wait that long for the GIL the loop holds, which
# is no reason to wake others that would wait for it too.
STALL_SECONDS = 0.005
THREAD_NAME = "mcp-asgi worker thread"

_Job = tuple[contextvars.Context, Callable[[], Any], "asyncio.Future[Any]", Any]


class _AnyioHooks:
    """anyio's thread claim, its thread locals, and the caller's cancel scope (private names).

    Looked up when the first pool is made, not at import: anyio's asyncio backend is only
    imported once a loop runs.
    """

    def __init__(self) -> None:
        self.claim: Callable[..., Any] | None = None
        self.threadlocals: Any = None
        self.backend: Any = None
        try:
            from anyio._core._eventloop import claim_worker_thread, get_async_backend, threadlocals
        except ImportError:  # a future anyio without them: from_thread needs an explicit token then
            return
        self.claim = claim_worker_thread
        self.threadlocals = threadlocals
        self.backend = get_async_backend()

    def caller_scope(self) -> Any:
        return anyio_scope(asyncio.current_task())


def anyio_scope(task: asyncio.Task[Any] | None) -> Any:
    """The innermost anyio cancel scope `task` is in, from anyio's private record of tasks (None without it)."""
    by_ref = _anyio_task_states()
    if by_ref is None or task is None:
        return None
    # The WeakKeyDictionary's own dict, looked up by a weak reference as its `get` does: without
    # that method's frame, since every request enters a few scopes that ask this.
    state = by_ref.get(weakref.ref(task))
    return None if state is None else getattr(state, "cancel_scope", None)


@functools.cache
def _anyio_task_states() -> Any:
    """anyio's record of tasks as a dict keyed by weak references to them (None without it)."""
    # Imported on first use, not at import: anyio's asyncio backend is only imported once a loop runs.
    try:
        from anyio._backends._asyncio import _task_states
    except ImportError:  # pragma: no cover - an anyio without it
        return None
    data = getattr(_task_states, "data", None)  # a WeakKeyDictionary's: bound once, never replaced
    return data if isinstance(data, dict) else None


class WorkerPool:
    """Daemon threads running blocking functions for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._jobs: deque[_Job] = deque()  # handed over, not yet taken by a thread
        self._parked: list[threading.Lock] = []  # idle threads, each waiting on its own (held) lock
        self._threads = 0  # started and not yet ended
        self._awake = 0  # threads running a call or about to look for one
        self._stall_after = max(STALL_SECONDS, sys.getswitchinterval())
        self._max_threads = 1
        self._stall_check: asyncio.TimerHandle | None = None
        self._stalled_head: _Job | None = None
        # Finished calls whose callers the loop has not been told of yet (threads append, the loop pops).
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._wake_pending = False
        self._wake_scheduled = False
        self._anyio = _AnyioHooks()
        # Handed to from_thread when the caller is in no anyio scope (anyio 4.4 requires one).
        self._root_scope = anyio.CancelScope()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn()` in a worker thread; the caller's cancellation abandons the result."""
        future: asyncio.Future[T] = self._loop.create_future()
        scope = self._anyio.caller_scope() or self._root_scope
        if (self._awake == 0 and not self._parked) or (self._awake and self._stall_check is None):
            # What may start threads: read here, in the caller's task (anyio finds its limiter only
            # from inside one), and only then (a parked thread to wake needs no new one).
            self._max_threads = _limit()
        with self._lock:
            self._jobs.append((contextvars.copy_context(), fn, future, scope))
            idle = self._awake == 0
        if idle:
            # No thread awake: wake one once this loop turn's other callbacks have run, so the
            # calls a burst of requests queues in the same turn go to it together, one GIL
            # hand-over and one pair of context switches for all of them (half as many switches
            # per call under load as waking it at the first call).
            if not self._wake_scheduled:
                self._wake_scheduled = True
                self._loop.call_soon(self._wake_one)
        elif self._stall_check is None:  # an awake thread will take it; unless it is stuck
            self._stall_check = self._loop.call_later(self._stall_after, self._check_stall)
        return await future

    def _wake_one(self) -> None:
        self._wake_scheduled = False
        with self._lock:
            woken = self._wake_locked(1) if self._awake == 0 and self._jobs else None
            more = len(self._jobs) > 1
        if woken is not None:
            try:
                self._start(woken)
            except BaseException as exc:  # no thread could start: the calls waiting fail with its reason
                self._fail_waiting(exc)
                return
        if more and self._stall_check is None:  # the rest wait for it: unless it is stuck
            self._stall_check = self._loop.call_later(self._stall_after, self._check_stall)

    def _fail_waiting(self, error: BaseException) -> None:
        with self._lock:
            if self._awake:
                return  # another thread runs; it will take them
            jobs = list(self._jobs)
            self._jobs.clear()
        for _, _, future, _ in jobs:
            if not future.done():
                future.set_exception(error)

    def _wake_locked(self, count: int) -> tuple[list[threading.Lock], int]:
        """Wake up to `count` threads (parked ones first, then new ones); with the lock held."""
        unpark: list[threading.Lock] = []
        new = 0
        for _ in range(count):
            if self._awake >= self._max_threads:
                break  # as many running as the limit allows (it may have been lowered since)
            if self._parked:
                unpark.append(self._parked.pop())
            elif self._threads < self._max_threads:
                self._threads += 1
                new += 1
            else:
                break  # every thread is taken: the calls wait for the first one free
            self._awake += 1
        return unpark, new

    def _start(self, woken: tuple[list[threading.Lock], int]) -> None:
        unpark, new = woken
        for parked in unpark:
            parked.release()
        for _ in range(new):
            try:
                threading.Thread(target=self._work, name=THREAD_NAME, daemon=True).start()
            except BaseException:
                with self._lock:
                    self._threads -= 1
                    self._awake -= 1
                raise

    def _check_stall(self) -> None:
        """Wake more threads when the oldest waiting call has waited a whole period."""
        self._stall_check = None
        with self._lock:
            head = self._jobs[0] if self._jobs else None
            woken = self._wake_locked(len(self._jobs)) if head is not None and head is self._stalled_head else None
            self._stalled_head = head
        if woken is not None:
            self._start(woken)
        if head is not None:
            self._stall_check = self._loop.call_later(self._stall_after, self._check_stall)

    def _work(self) -> None:
        claim = self._anyio.claim
        if claim is None:
            self._serve()
            return
        with claim(self._anyio.backend, self._loop):
            self._serve()

    def _serve(self) -> None:
        parking = threading.Lock()
        parking.acquire()
        while True:
            with self._lock:
                if self._jobs:
                    job: _Job | None = self._jobs.popleft()
                else:
                    job = None
                    self._awake -= 1
                    self._parked.append(parking)
            if job is not None:
                self._run(*job)
                continue
            if parking.acquire(timeout=IDLE_SECONDS):
                continue  # woken: counted awake by whoever woke us
            with self._lock:
                if parking in self._parked:  # nobody came for us: leave
                    self._parked.remove(parking)
                    self._threads -= 1
                    return
            parking.acquire()  # woken just as we gave up: take that wake-up

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
