"""Where a task's tool runs: the `TaskRunner` interface.

The runtime creates the task record (tool, arguments, request `_meta`, revision and client
capabilities are in `record.request`) before `submit` is called, and `run_task(server,
task_id)` (in `mcp_asgi.tasks.runtime`) does everything else wherever it is awaited: it
loads the record, runs the tool with a task-bound `Context`, watches for `tasks/cancel`,
turns input requests into `input_required` and waits for `tasks/update`, and writes the
result or error. A runner only decides where and when that coroutine runs:

- the in-process runner (the default) starts it in the server's task group;
- a job-engine runner (`mcp_asgi.tasks.<engine>`, an extra) enqueues the task id, and the
  engine's worker process, which imports the same server, awaits `run_task` there.

Retries: `run_task(..., last_attempt=False)` raises `RetryTask` instead of failing the task
when a tool declared retryable raised; the engine then runs it again (and passes
`last_attempt=True` on its final try).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer


class RetryTask(Exception):
    """Raised by `run_task(..., last_attempt=False)`: the attempt failed and the tool may be retried."""


class TaskRunner(Protocol):
    async def start(self, server: MCPServer) -> None:
        """Open what the runner needs; called by the server's lifespan (and the lazy start)."""
        ...

    async def submit(self, server: MCPServer, task_id: str) -> None:
        """Arrange for `run_task(server, task_id)` to run; return once it is durably queued or started."""
        ...

    async def close(self, grace: float) -> None:
        """Stop: tasks still running in this process get `grace` seconds, then fail with a task error."""
        ...
