"""Lifespans that compose, and a lifespan that can be shared by many hosts.

`combine_lifespans` runs several lifespans (or the lifespans of ASGI apps) as one, so a
host can start an MCP app alongside its own resources. `SharedLifespan` lets one MCP app
be started by every host it is mounted in, run again after it stopped, and start lazily
when no host ran it at all.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any

import anyio
from starlette.routing import Router
from starlette.types import ASGIApp, Message

__all__ = ["SharedLifespan", "combine_lifespans"]

logger = logging.getLogger("mcp_asgi")

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]

DEFAULT_LAZY_WARNING = (
    "The {name} lifespan was not run by the host application, so it was started lazily on "
    "the first request. Wire it into the host so it starts and stops with the server: "
    "`FastAPI(lifespan=mcp_app.lifespan)`, `mount(app, '/mcp', mcp)`, or "
    "`FastAPI(lifespan=combine_lifespans(your_lifespan, mcp_app))`."
)


def combine_lifespans(*lifespans: Any) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any] | None]]:
    """Run several lifespans as one: enter in order, exit in reverse, merge their state.

    Each item is a Starlette-style lifespan (`app -> async context manager`), an ASGI app
    whose lifespan should run (Starlette/FastAPI apps, anything with `.router.lifespan_context`,
    or a bare ASGI callable speaking the lifespan protocol), or an object with
    `__mcp_asgi_app__()` returning such an app. State dicts are merged with later items
    winning; the merged dict is yielded, or `None` when no item yielded any state (so servers
    without lifespan-state support keep working).

        app = FastAPI(lifespan=combine_lifespans(db_lifespan, mcp_app))
    """
    resolved = [_as_lifespan(item, f"lifespans[{index}]") for index, item in enumerate(lifespans)]

    @asynccontextmanager
    async def combined(app: Any) -> AsyncIterator[dict[str, Any] | None]:
        state: dict[str, Any] = {}
        any_state = False
        # AsyncExitStack unwinds the lifespans already entered when a later one fails,
        # and lets the original exception through untouched.
        async with AsyncExitStack() as stack:
            for lifespan in resolved:
                entered = await stack.enter_async_context(lifespan(app))
                if entered is not None:
                    any_state = True
                    state.update(entered)
            yield state if any_state else None

    return combined


def _as_lifespan(item: Any, argument: str) -> Lifespan:
    """Turn one `combine_lifespans` item into a Starlette-style lifespan."""
    app_factory = getattr(item, "__mcp_asgi_app__", None)
    if callable(app_factory):
        item = app_factory()
    if isinstance(item, SharedLifespan):
        return item
    router = item if isinstance(item, Router) else getattr(item, "router", None)
    if router is not None and hasattr(router, "lifespan_context"):
        return _app_lifespan(item, router)
    if not callable(item):
        raise TypeError(
            f"combine_lifespans() {argument} must be a lifespan `(app) -> async context manager` "
            f"or an ASGI app, got {item!r}"
        )
    if _is_asgi_app(item):
        return _protocol_lifespan(item)
    return item


def _app_lifespan(app: Any, router: Any) -> Lifespan:
    # The router's lifespan is read when entered, not now: `mount()` may wrap it later, and
    # the app is passed as itself so its lifespan sees its own `app.state`.
    def lifespan(_host: Any) -> AbstractAsyncContextManager[Any]:
        return router.lifespan_context(app)

    return lifespan


def _is_asgi_app(obj: Any) -> bool:
    """Tell an ASGI app `(scope, receive, send)` from a lifespan `(app)`; both are callables."""
    call = obj
    while isinstance(call, functools.partial):
        call = call.func
    if inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__):
        return True
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return sum(p.default is p.empty for p in positional) >= 3


def _protocol_lifespan(app: ASGIApp) -> Lifespan:
    """Drive a bare ASGI app through the lifespan protocol, like uvicorn's `lifespan="auto"`."""

    @asynccontextmanager
    async def lifespan(_host: Any) -> AsyncIterator[dict[str, Any] | None]:
        runner = _ProtocolRunner(app)
        error: BaseException | None = None
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(runner.run)
            await runner.started.wait()
            if runner.startup_failed is not None:
                # Do not wait on an app that reported failure but kept its lifespan open.
                task_group.cancel_scope.cancel()
            else:
                try:
                    yield runner.state or None
                except BaseException as exc:
                    # Raised again below: out of the task group it would come out wrapped in an
                    # ExceptionGroup, and callers are owed the host's original exception.
                    error = exc
                finally:
                    with anyio.CancelScope(shield=True):
                        await runner.shutdown()
        if error is not None:
            raise error
        if runner.startup_failed is not None:
            raise RuntimeError(f"ASGI app {app!r} failed to start: {runner.startup_failed}")
        if runner.shutdown_failed is not None:
            raise RuntimeError(f"ASGI app {app!r} failed to shut down: {runner.shutdown_failed}")

    return lifespan


class _ProtocolRunner:
    """One conversation with an ASGI app over a `lifespan` scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.started = anyio.Event()
        self.finished = anyio.Event()
        self.startup_failed: str | None = None
        self.shutdown_failed: str | None = None
        self._shutdown_requested = anyio.Event()
        self._messages = iter(({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}))

    async def run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception:
            # An app that raises before starting has no lifespan support: carry on without
            # it, as uvicorn does. A failure it already reported by message is raised by
            # our caller; anything else after starting is a crash worth logging.
            if self.startup_failed is not None or self.shutdown_failed is not None:
                pass
            elif not self.started.is_set():
                logger.debug("ASGI 'lifespan' protocol appears unsupported by %r", self.app, exc_info=True)
            else:
                logger.exception("ASGI app %r crashed in its lifespan", self.app)
        finally:
            self.started.set()
            self.finished.set()

    async def shutdown(self) -> None:
        self._shutdown_requested.set()
        await self.finished.wait()

    async def _receive(self) -> Message:
        message = next(self._messages, None)
        if message is None or message["type"] == "lifespan.shutdown":
            await self._shutdown_requested.wait()
            return {"type": "lifespan.shutdown"}
        return message

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.startup_failed = message.get("message", "")
            self.started.set()
        elif kind == "lifespan.shutdown.failed":
            self.shutdown_failed = message.get("message", "")


class SharedLifespan:
    """A lifespan that many hosts can enter, that can run again, and that can start lazily.

    Reference-counted: the first entry runs `fn(app)`, later entries share its state, the
    last exit stops it, and the next entry starts it afresh. `fn` is always entered and
    exited by one dedicated task, so hosts may enter and exit from any task in any order
    and the cancel scopes or task groups opened inside `fn` stay valid.

        shared = SharedLifespan(session_manager_lifespan)
        app = Starlette(routes=..., lifespan=shared)
    """

    def __init__(
        self,
        fn: Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]],
        *,
        name: str = "MCP server",
        lazy_warning: str | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"SharedLifespan `fn` must be a lifespan `(app) -> async context manager`, got {fn!r}")
        self.fn = fn
        self.name = name
        if lazy_warning is None:
            lazy_warning = DEFAULT_LAZY_WARNING.format(name=name)
        self.lazy_warning = lazy_warning
        # One run per event loop: a run's task lives on its loop, and two hosts on two
        # loops (two servers in threads, two TestClients) must not share or end each other's.
        self._runs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _OwnedRun] = weakref.WeakKeyDictionary()
        # One lock per event loop: anyio locks belong to the loop that first waits on them,
        # and each `TestClient` runs on a loop of its own.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.Lock] = weakref.WeakKeyDictionary()

    def __call__(self, app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
        return _SharedEntry(self, app)

    @property
    def running(self) -> bool:
        """Whether a run serves the current event loop (any loop, when called outside one)."""
        return self._visible() is not None

    @property
    def state(self) -> dict[str, Any]:
        run = self._visible()
        return run.state if run is not None else {}

    def _visible(self) -> _OwnedRun | None:
        try:
            return self._current()
        except RuntimeError:  # no running loop: report any live run
            return next((run for run in list(self._runs.values()) if run.alive), None)

    async def ensure_started(self, app: Any) -> dict[str, Any]:
        """Start `fn` if no host did, for apps served without their lifespan; return its state."""
        run = self._current()
        if run is not None:
            return run.state
        async with self._lock():
            run = self._current()
            if run is None:
                logger.warning(self.lazy_warning)
                run = await _OwnedRun.start(self.fn, app, self.name)
                self._runs[run.loop] = run
        return run.state

    async def aclose(self) -> None:
        """Stop the running instance now, however it was started (mainly for lazy starts)."""
        async with self._lock():
            run = self._runs.pop(asyncio.get_running_loop(), None)
            if run is not None:
                await run.stop()

    async def _acquire(self, app: Any) -> _OwnedRun:
        async with self._lock():
            run = self._current()
            if run is None:
                run = await _OwnedRun.start(self.fn, app, self.name)
                self._runs[run.loop] = run
            run.users += 1
            return run

    async def _release(self, run: _OwnedRun) -> None:
        async with self._lock():
            run.users -= 1
            if run.users > 0:
                return
            if self._runs.get(run.loop) is run:
                del self._runs[run.loop]
            # Stopped under the lock so a quick re-entry waits for the old run to finish.
            await run.stop()

    def _current(self) -> _OwnedRun | None:
        run = self._runs.get(asyncio.get_running_loop())
        return run if run is not None and run.alive else None

    def _lock(self) -> anyio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = anyio.Lock()
        return lock

    def __repr__(self) -> str:
        return f"SharedLifespan(name={self.name!r}, running={self.running})"


class _SharedEntry(AbstractAsyncContextManager[dict[str, Any]]):
    """One host's `async with shared(app)`."""

    def __init__(self, shared: SharedLifespan, app: Any) -> None:
        self._shared = shared
        self._app = app
        self._run: _OwnedRun | None = None

    async def __aenter__(self) -> dict[str, Any]:
        if self._run is not None:
            raise RuntimeError(f"This {self._shared.name} lifespan entry is already in use")
        self._run = await self._shared._acquire(self._app)
        return self._run.state

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        run, self._run = self._run, None
        if run is not None:
            await self._shared._release(run)


class _OwnedRun:
    """One run of a lifespan function, entered and exited inside a task of its own.

    The task is a plain asyncio task because anyio offers no way to spawn a task that
    outlives its caller without a task group, and neither a request handler nor a host's
    lifespan gives us one that lives long enough. anyio cancel scopes and task groups work
    in any task under anyio's asyncio backend, which is the only one we support.
    """

    def __init__(self, fn: Lifespan, app: Any, name: str) -> None:
        self.fn = fn
        self.app = app
        self.name = name
        self.users = 0
        self.state: dict[str, Any] = {}
        self.loop = asyncio.get_running_loop()
        self.error: BaseException | None = None
        self._started = anyio.Event()
        self._stop = anyio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, fn: Lifespan, app: Any, name: str) -> _OwnedRun:
        run = cls(fn, app, name)
        run._task = asyncio.create_task(run._main(), name=f"{name} lifespan")
        try:
            await run._started.wait()
        except BaseException:
            # Our caller was cancelled mid-start; do not leave a half-started run behind.
            run._task.cancel()
            raise
        if run.error is not None:
            raise run.error
        return run

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and not self._stopping

    async def stop(self) -> None:
        """Exit the lifespan and wait for it; raise what its shutdown raised."""
        self._stopping = True
        self._stop.set()
        if self._task is not None and not self._task.done():
            with anyio.CancelScope(shield=True):
                await asyncio.wait([self._task])
        error, self.error = self.error, None
        if isinstance(error, Exception):
            raise error

    async def _main(self) -> None:
        try:
            async with self.fn(self.app) as state:
                self.state = dict(state or {})
                self._started.set()
                await self._stop.wait()
        except Exception as exc:
            self.error = exc
            if self._started.is_set() and not self._stop.is_set():
                logger.error("The %s lifespan stopped unexpectedly", self.name, exc_info=exc)
        except BaseException as exc:
            # Cancelled, typically because its event loop is closing (as after each request
            # of a `TestClient` used without `with`); the next start gets a fresh run.
            self.error = exc
            logger.debug("The %s lifespan was cancelled", self.name)
            raise
        finally:
            self._started.set()
