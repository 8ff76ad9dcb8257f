"""Durable tasks on pydocket: `DocketRunner` queues each task in Redis, a worker process runs it.

Needs the extra `mcp-asgi[tasks]` (pydocket, a Redis job engine); imported only when the runner
starts, so `import mcp_asgi` never imports it.

    mcp = MCPServer("jobs", backend=RedisBackend(URL), task_runner=DocketRunner(URL))

The web workers only queue: `submit` adds one pydocket job keyed by the task id (a second
submit of the same task is a no-op) and returns once it is in Redis. The job engine's worker
processes, started with

    python -m mcp_asgi.tasks.docket path/to/app.py:mcp

import the same server, run its lifespan, and await `run_task(server, task_id)` for each job:
the task survives the web worker that created it, and any web worker answers `tasks/get`,
`tasks/update` and `tasks/cancel` from the shared task store. A worker process that dies
mid-task has its job redelivered to another after `redelivery_timeout` (pydocket's lease).

Retries: a tool declared `retryable=True` whose run raises is run again, up to `retries` more
times, `retry_delay` seconds apart (pydocket's `Retry`); its last attempt runs with
`last_attempt=True`, so a failure there fails the task with a task error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from mcp_asgi.bus import backend_unavailable
from mcp_asgi.protocol.jsonrpc import MCPError

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")

# The pydocket task name every job carries; web and worker processes register it under this name.
JOB_NAME = "mcp_asgi_run_task"
_WHAT = "task queue (pydocket on Redis)"

RunTask = Callable[..., Awaitable[None]]


def import_docket() -> Any:
    """pydocket, imported on first use."""
    try:
        import docket
    except ImportError as exc:  # pragma: no cover - the test extras install it
        raise ImportError("DocketRunner needs pydocket: pip install 'mcp-asgi[tasks]'") from exc
    return docket


def _default_run_task() -> RunTask:
    from mcp_asgi.tasks.runtime import run_task

    return run_task


def _task_backend(server: MCPServer) -> Any:
    from mcp_asgi.tasks.runtime import task_backend

    return task_backend(server)


class DocketRunner:
    """A `TaskRunner` whose tasks run on pydocket worker processes, durable in Redis.

    `url`: the Redis of the job queue; default the URL of the server's `RedisBackend`, else
    `MCP_ASGI_REDIS_URL`. `name`: the pydocket queue (several servers on one Redis need
    different names). `retries`/`retry_delay`: how often and how soon a `retryable` tool is
    run again. `concurrency`: tasks one worker process runs at once. `timeout`: the most a
    `submit` waits for Redis before the request fails with a 503.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str = "mcp-asgi-tasks",
        retries: int = 2,
        retry_delay: float = 1.0,
        concurrency: int = 10,
        redelivery_timeout: float = 300.0,
        timeout: float = 5.0,
    ) -> None:
        if url is not None and not isinstance(url, str):
            raise TypeError("`url` must be a redis:// URL string or None")
        if not isinstance(name, str) or not name:
            raise ValueError("`name` must be a non-empty string")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError("`retries` must be a whole number >= 0")
        if retry_delay < 0:
            raise ValueError("`retry_delay` must be >= 0 seconds")
        if concurrency < 1:
            raise ValueError("`concurrency` must be at least 1")
        if not redelivery_timeout > 0 or not timeout > 0:
            raise ValueError("`redelivery_timeout` and `timeout` must be positive numbers of seconds")
        self.url = url
        self.name = name
        self.retries = retries
        self.retry_delay = retry_delay
        self.concurrency = concurrency
        self.redelivery_timeout = redelivery_timeout
        self.timeout = timeout
        self._docket: Any = None
        self._lock: anyio.Lock | None = None

    def queue_url(self, server: MCPServer) -> str:
        """The Redis URL of the queue: `url`, else the server's Redis backend's, else MCP_ASGI_REDIS_URL."""
        if self.url is not None:
            return self.url
        backend_url = getattr(_task_backend(server), "url", None)
        url = backend_url if isinstance(backend_url, str) else os.environ.get("MCP_ASGI_REDIS_URL")
        if not url:
            raise RuntimeError("DocketRunner has no Redis URL: pass DocketRunner(url) or use a RedisBackend")
        return url

    def job(self, server: MCPServer, run_task: RunTask | None = None) -> Callable[..., Awaitable[None]]:
        """The pydocket task function that runs one task of `server` (`run_task` replaceable in tests)."""
        docket = import_docket()
        attempts = self.retries + 1
        retry_default = docket.Retry(attempts=attempts, delay=timedelta(seconds=self.retry_delay))

        async def mcp_asgi_run_task(task_id: str, retry: Any = retry_default) -> None:
            # RetryTask (a retryable tool raised, more attempts left) propagates: pydocket's Retry runs it again.
            run = run_task or _default_run_task()
            await run(server, task_id, last_attempt=retry.attempt >= attempts)

        mcp_asgi_run_task.__name__ = JOB_NAME
        return mcp_asgi_run_task

    async def _guarded(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()` within `timeout`; Redis unreachable (or the queue failing to open) is the 503 error."""
        try:
            with anyio.fail_after(self.timeout):
                return await call()
        except TimeoutError:
            raise backend_unavailable(_WHAT, f"no answer within {self.timeout:g} s") from None
        except (OSError, ConnectionError) as error:
            raise backend_unavailable(_WHAT, type(error).__name__) from error
        except Exception as error:
            redis_errors = _redis_errors()
            if isinstance(error, redis_errors):
                raise backend_unavailable(_WHAT, type(error).__name__) from error
            raise

    async def start(self, server: MCPServer) -> None:
        """Open the queue (the server's lifespan); with Redis unreachable, log it and open at the next submit.

        A server whose tasks are not in a shared store is refused here: the job workers could not see them.
        """
        shared_store(server)
        try:
            await self._open(server)
        except MCPError as exc:
            # Like the Redis backend: the web worker starts anyway and answers 503 until Redis is back.
            logger.warning("DocketRunner could not open its queue yet: %s", exc.message)

    async def _open(self, server: MCPServer) -> Any:
        if self._docket is not None:
            return self._docket
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._docket is None:
                docket = import_docket().Docket(name=self.name, url=self.queue_url(server))
                try:
                    await self._guarded(docket.__aenter__)
                except BaseException:
                    with anyio.move_on_after(1.0, shield=True):
                        await _quietly_exit(docket)
                    raise
                docket.register(self.job(server))
                self._docket = docket
        return self._docket

    async def submit(self, server: MCPServer, task_id: str) -> None:
        docket = await self._open(server)  # also the lazy start: a host that ran no lifespan
        await self._guarded(lambda: docket.add(JOB_NAME, key=task_id)(task_id))

    async def close(self, grace: float) -> None:
        # Nothing runs here: queued and running tasks live on in Redis and the worker processes.
        docket, self._docket = self._docket, None
        if docket is not None:
            with anyio.move_on_after(max(grace, 1.0)):
                await docket.__aexit__(None, None, None)

    async def work(self, server: MCPServer, *, run_task: RunTask | None = None, until_finished: bool = False) -> None:
        """Be a worker: run `server`'s queued tasks until cancelled (or, `until_finished`, the queue is empty).

        The server's lifespan runs around it (tools find what it opens) and its task backend is
        opened here, since no web app is built in a worker process.
        """
        docket_module = import_docket()
        backend = shared_store(server)
        async with server._lifespan(None):
            await backend.start()
            try:
                async with docket_module.Docket(name=self.name, url=self.queue_url(server)) as docket:
                    docket.register(self.job(server, run_task))
                    worker = docket_module.Worker(
                        docket,
                        concurrency=self.concurrency,
                        redelivery_timeout=timedelta(seconds=self.redelivery_timeout),
                    )
                    async with worker:
                        if until_finished:
                            await worker.run_until_finished()
                        else:
                            await worker.run_forever()
            finally:
                await backend.close()


def shared_store(server: MCPServer) -> Any:
    """The server's task backend, when other processes can see it; else the one-line error of what to set."""
    backend = _task_backend(server)
    if not getattr(backend, "shared", False):
        raise RuntimeError(
            "DocketRunner runs tasks in other processes, so the server's tasks must be in Redis: "
            "pass MCPServer(backend=RedisBackend(...)) or set MCP_ASGI_REDIS_URL"
        )
    return backend


async def _quietly_exit(docket: Any) -> None:
    """Undo a half-opened Docket (Redis was not there); what it fails with no longer matters."""
    try:
        await docket.__aexit__(None, None, None)
    except Exception:
        logger.debug("closing a half-opened pydocket queue failed", exc_info=True)


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover
        return ()
    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def runner_of(server: MCPServer) -> DocketRunner | None:
    """The server's `task_runner` when it is a DocketRunner."""
    for attribute in ("task_runner", "_task_runner"):
        runner = getattr(server, attribute, None)
        if isinstance(runner, DocketRunner):
            return runner
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mcp_asgi.tasks.docket",
        description="Run the tasks of an MCP server queued by its DocketRunner (a pydocket worker process).",
    )
    parser.add_argument("target", help="the server: path/to/app.py[:name] or module[:name], as for `mcp-asgi run`")
    parser.add_argument("--url", help="Redis URL of the queue (default: the server's DocketRunner's)")
    parser.add_argument("--concurrency", type=int, help="tasks this process runs at once")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The worker process: import the server, run its queued tasks until SIGTERM/SIGINT."""
    from mcp_asgi.cli import CLIError, load_server
    from mcp_asgi.server import MCPServer

    args = _parser().parse_args(argv)
    try:
        server = load_server(args.target)
    except CLIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not isinstance(server, MCPServer):
        print(f"error: {args.target} is an app; point at its MCPServer (path/to/app.py:name)", file=sys.stderr)
        return 2
    try:
        shared_store(server)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runner = runner_of(server) or DocketRunner(args.url)
    if args.url:
        runner.url = args.url
    if args.concurrency:
        runner.concurrency = args.concurrency
    asyncio.run(_work_until_signalled(runner, server))
    return 0


async def _work_until_signalled(runner: DocketRunner, server: MCPServer) -> None:
    # SIGTERM/SIGINT stop the worker; its running jobs are redelivered to another worker later.
    work = asyncio.ensure_future(runner.work(server))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, work.cancel)
    try:
        await work
    except asyncio.CancelledError:
        logger.info("task worker stopped")


if __name__ == "__main__":
    # Run as the imported module, so `DocketRunner` here is the class the user's server was built with.
    from mcp_asgi.tasks.docket import main as _main

    sys.exit(_main())
