"""The default task runner: each task runs in this process, on the server's event loop.

Tasks are asyncio tasks of the loop that created them, so they need no lifespan (a server
started lazily runs them too); at most `max_concurrency` run at once, the rest wait their
turn in `working`. At shutdown (the server's lifespan ending) running tasks get a grace
period, then are cancelled and fail with a task error saying the server shut down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.tasks.runtime import SHUTDOWN_ERROR, fail_task, run_task

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")


class InProcessRunner:
    """Runs `run_task` as asyncio tasks of this process; `MCPServer(task_runner=None)` uses one."""

    def __init__(self, *, max_concurrency: int = 100) -> None:
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError("`max_concurrency` must be a positive number of tasks")
        self.max_concurrency = max_concurrency
        self._running: dict[asyncio.Task[None], tuple[MCPServer, str]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def __len__(self) -> int:
        """How many tasks this runner holds (running or waiting for a slot)."""
        return len(self._running)

    async def start(self, server: MCPServer) -> None:
        self._closing = False

    async def submit(self, server: MCPServer, task_id: str) -> None:
        if self._closing:
            raise MCPError(-32000, "Server shutting down: no new tasks are accepted", http_status=503)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (a restarted server, a test's): the old loop's semaphore is unusable.
            self._loop, self._slots = loop, asyncio.Semaphore(self.max_concurrency)
        task = loop.create_task(self._run(server, task_id), name=f"mcp-asgi task {task_id}")
        self._running[task] = (server, task_id)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)

    async def _run(self, server: MCPServer, task_id: str) -> None:
        assert self._slots is not None
        async with self._slots:
            try:
                await run_task(server, task_id)
            except Exception as exc:
                # run_task stores the tool's failures itself; this is the store or bus failing under it.
                logger.exception("Task %s could not be run", task_id)
                try:
                    await fail_task(server, task_id, f"the task could not be run: {type(exc).__name__}")
                except Exception:
                    logger.exception("Task %s could not be marked failed", task_id)

    async def close(self, grace: float) -> None:
        """Give running tasks `grace` seconds, then cancel them and mark them failed; new ones are refused."""
        self._closing = True
        loop = asyncio.get_running_loop()
        pending = {task: owner for task, owner in self._running.items() if task.get_loop() is loop}
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=max(grace, 0))
        for task in late:
            task.cancel()
        if late:
            # A tool that swallows cancellation must not hold shutdown forever.
            await asyncio.wait(late, timeout=max(grace, 1.0))
        for task in late:
            server, task_id = pending[task]
            try:
                await fail_task(server, task_id, SHUTDOWN_ERROR)
            except Exception:
                logger.exception("Task %s could not be marked failed at shutdown", task_id)
