"""Learning that the host server is shutting down, before it waits for our open streams.

On SIGTERM or SIGINT (and SIGQUIT under gunicorn's `UvicornWorker`), uvicorn sets a flag,
stops accepting, closes idle connections and then waits for busy ones to finish, forever
unless `timeout_graceful_shutdown` is set; only after that does it send the app
`lifespan.shutdown`. A GET stream or a `subscriptions/listen` stream is busy until someone
ends it, and ASGI has no message for "the server is stopping", so the app hears of the
shutdown from the signal itself:

- `arm()` (called when the lifespan starts and when a stream opens, on the main thread)
  wraps the SIGTERM/SIGINT/SIGQUIT handler the host installed: the wrapper calls it, then
  tells the event loop. A default, ignored or C-level handler is left alone (nothing to
  chain to: the default SIGTERM kills the process anyway). Nothing is restored later: a
  host that installed its handler restores what it replaced, which drops the wrapper too.
- `begin()` is the same news from code that knows (`run()` calls it from uvicorn's shutdown).
- Streams wait for their next message inside `stream_wait()`: shutdown ends the wait, never
  a send, and the stream ends cleanly. Calls run inside `grace()`: shutdown gives them
  `graceful_period` seconds to finish, then cancels them so they can be answered with an error.

Hosts that handle signals through `loop.add_signal_handler` (hypercorn) are covered too:
their Python-level handler is a no-op that gets wrapped like any other. A host that never
signals (uvicorn in a thread, stopped with `server.should_exit = True`) is not: it must call
`begin()` on its loop, or end streams another way.

The bottom layer: imports nothing from mcp_asgi but `cancel_scope` (as low).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import weakref
from types import FrameType, TracebackType
from typing import Any

import anyio

from mcp_asgi.cancel_scope import TaskCancelScope

__all__ = ["DEFAULT_GRACEFUL_PERIOD", "arm", "begin", "configure", "state"]

logger = logging.getLogger("mcp_asgi")

# Seconds a call still running when shutdown begins may take to finish.
DEFAULT_GRACEFUL_PERIOD = 5.0
# SIGQUIT: gunicorn's quick shutdown, which its UvicornWorker hands to uvicorn's handle_exit.
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGQUIT") if hasattr(signal, name))


class HostShutdown:
    """What one event loop knows of the host's shutdown, and what must stop when it begins."""

    __slots__ = ("loop", "graceful_period", "begun_at", "_waits", "_calls")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.graceful_period = DEFAULT_GRACEFUL_PERIOD
        self.begun_at: float | None = None
        self._waits: set[anyio.CancelScope] = set()
        self._calls: set[_Grace] = set()

    @property
    def begun(self) -> bool:
        return self.begun_at is not None

    def begin(self) -> None:
        """The host is stopping: end every stream's wait now, give every call its graceful period."""
        if self.begun_at is not None:
            return
        self.begun_at = self.loop.time()
        logger.debug(
            "Host shutdown: ending %d open stream(s), %d call(s) in flight", len(self._waits), len(self._calls)
        )
        for wait in list(self._waits):
            wait.cancel()
        for call in list(self._calls):
            call.cancel_at(self.begun_at + self.graceful_period)

    def stream_wait(self, wait: anyio.CancelScope) -> _Registered:
        """Register a stream's wait for its next message (a cancel scope) while it is entered."""
        return _Registered(self._waits, wait)

    def grace(self) -> _Grace:
        """A cancel scope for one call: cancelled `graceful_period` s after shutdown begins."""
        grace = _Grace()
        grace._host = self
        if self.begun_at is None:
            self._calls.add(grace)
        else:  # arrived while the host was already stopping
            grace.cancel_at(self.begun_at + self.graceful_period)
        return grace


class _Registered:
    """Keeps a cancel scope in a set for the length of a `with` block."""

    __slots__ = ("_scopes", "_scope")

    def __init__(self, scopes: set[anyio.CancelScope], scope: anyio.CancelScope) -> None:
        self._scopes = scopes
        self._scope = scope

    def __enter__(self) -> anyio.CancelScope:
        self._scopes.add(self._scope)
        return self._scope

    def __exit__(self, *exc: object) -> None:
        self._scopes.discard(self._scope)


class _Grace(TaskCancelScope):
    """`with host.grace() as grace:` runs a call; `grace.cut` says shutdown cut it after its period.

    Cheap while nothing is stopping (every user-code call enters one): a `TaskCancelScope`,
    noted in a set, and only a shutdown gives it a deadline, `graceful_period` s after it began
    (a call arriving while the host already stops gets that deadline at once). An anyio cancel
    scope per call cost more than the rest of a trivial call's dispatch. Like any
    `TaskCancelScope`, it swallows only its own cancellation, and a shielded anyio scope inside
    the call holds the cut until the shield ends (before, the cut went through shields).
    """

    # Made by `HostShutdown.grace()` alone (no __init__ or __enter__ of its own: a call pays
    # for every frame).
    __slots__ = ("_host",)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._host._calls.discard(self)
        return TaskCancelScope.__exit__(self, exc_type, exc, tb)

    @property
    def cut(self) -> bool:
        """The period ended while the call ran, and the call was cancelled for it."""
        return self.cancel_delivered


_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HostShutdown] = weakref.WeakKeyDictionary()


# The last loop's state, at hand: one loop serves almost always, and every call asks.
_last: HostShutdown | None = None


def state() -> HostShutdown:
    """The shutdown state of the running event loop."""
    global _last
    loop = asyncio.get_running_loop()
    host = _last
    if host is None or host.loop is not loop:
        host = _states.get(loop)
        if host is None:
            host = _states[loop] = HostShutdown(loop)
        _last = host
    return host


def begin() -> None:
    """Tell the running loop's streams and calls that the host is shutting down."""
    state().begin()


def configure(graceful_period: float) -> None:
    """Start a fresh serve on the running loop: not shutting down, calls get `graceful_period` s."""
    if graceful_period < 0:
        raise ValueError(f"`graceful_shutdown` must be >= 0 seconds; got {graceful_period!r}")
    host = state()
    host.graceful_period = graceful_period
    host.begun_at = None


class _Chained:
    """A signal handler that runs the one it replaced, then tells the event loop."""

    __slots__ = ("original", "loop")

    def __init__(self, original: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.original = original
        self.loop = loop

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        try:
            self.original(signum, frame)
        finally:
            # Signal handlers run on the main thread between bytecodes: hand over, do nothing here.
            try:
                self.loop.call_soon_threadsafe(_begin_on_loop)
            except RuntimeError:
                pass  # that loop is closed: nothing of ours is left to stop


def _begin_on_loop() -> None:
    state().begin()


def arm() -> HostShutdown:
    """Chain onto the host's SIGTERM/SIGINT handlers (main thread only); the running loop's state."""
    host = state()
    if threading.current_thread() is not threading.main_thread():
        return host  # signals are delivered to the main thread's handlers only
    for signum in _SIGNALS:
        handler = signal.getsignal(signum)
        if isinstance(handler, _Chained):
            handler.loop = host.loop  # already chained; a later loop on this thread takes over
        elif callable(handler):  # not SIG_DFL, SIG_IGN, or None (a handler installed from C)
            try:
                signal.signal(signum, _Chained(handler, host.loop))
            except (ValueError, OSError):  # pragma: no cover - an interpreter without signals
                pass
    return host
