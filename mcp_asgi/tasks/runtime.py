"""Running one task: `run_task(server, task_id)`, in whatever process awaits it.

Everything a run needs is in the task record (`record.request`: the tool, its arguments,
the request `_meta`, the revision, the input answers gathered before the task existed)
and in the server's backend (the task store and the bus), never in an HTTP request: the
in-process runner awaits it in the web worker, a job engine's worker process awaits it
with the same server imported. Every change it makes to the record is announced on the
bus (`task_channel(id)`), which is how `tasks/get` on any worker, a `subscriptions/listen`
stream and the run itself (waiting for `tasks/update` or `tasks/cancel`) hear of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from mcp_asgi.components.tools import raise_unexpected
from mcp_asgi.protocol.dispatch import build_call
from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, MCPError
from mcp_asgi.protocol.versions import REVISIONS
from mcp_asgi.tasks.runner import RetryTask
from mcp_asgi.tasks.store import CANCELLED, COMPLETED, FAILED, WORKING, TaskRecord, task_channel

if TYPE_CHECKING:
    from mcp_asgi.backend import Backend
    from mcp_asgi.components.tools import Tool
    from mcp_asgi.protocol.dispatch import Call
    from mcp_asgi.protocol.mrtr import InputSpec
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")

SHUTDOWN_ERROR = "the server shut down before the task finished"
# How often a run re-reads its record while it waits (for answers, for a cancel), in case a bus
# message was missed (a Redis subscription that was not ready yet, an overflowed queue).
RECHECK_SECONDS = 1.0


def task_backend(server: MCPServer) -> Backend:
    """The backend whose task store and bus hold this server's tasks (the same one in every process).

    The server's `backend=`, else `MCP_ASGI_REDIS_URL`'s, else the backend of the server's first
    app, else one of its own (a server run without `http_app()`, a unit test).
    """
    chosen = getattr(server, "_task_backend", None)
    if chosen is not None:
        return chosen
    from mcp_asgi.http_app import environment_backend

    chosen = server.backend or environment_backend(server)
    if chosen is None:
        chosen = next(iter(server._backends), None)
    if chosen is None:
        from mcp_asgi.backend import InMemoryBackend

        chosen = InMemoryBackend()
    server._task_backend = chosen
    return chosen


async def announce(backend: Backend, record: TaskRecord) -> None:
    """Tell every worker that `record` changed; a bus that cannot be reached only delays the news."""
    try:
        await backend.bus.publish(task_channel(record.task_id), {"task": record.to_dict()})
    except Exception as exc:
        # Waiters re-read the store every RECHECK_SECONDS; pollers read the store anyway.
        logger.warning("Could not announce the change of task %s: %s", record.task_id, exc)


async def settle(
    backend: Backend,
    task_id: str,
    status: str,
    *,
    message: str | None = None,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> TaskRecord | None:
    """Move a task to `status` and announce it; None when it was already terminal (or is gone)."""
    record = await backend.tasks.set_status(task_id, status, message=message, result=result, error=error)
    if record is not None:
        await announce(backend, record)
    return record


async def fail_task(server: MCPServer, task_id: str, message: str, code: int = INTERNAL_ERROR) -> None:
    """End a task that cannot finish (its runner is going away) with a JSON-RPC error."""
    await settle(
        task_backend(server),
        task_id,
        FAILED,
        message=f"Task failed: {message}",
        error={"code": code, "message": message},
    )


@dataclass
class _Watch:
    cancelled: bool = False


async def run_task(server: MCPServer, task_id: str, *, last_attempt: bool = True) -> None:
    """Run the tool call of task `task_id` to its end and store the outcome.

    Tool result (also `isError: true`) -> `completed`; a JSON-RPC error (an unexpected exception
    is -32603) -> `failed`; `tasks/cancel` (or the task expiring) -> `cancelled`. With
    `last_attempt=False`, a `retryable` tool that raises makes this raise `RetryTask` and leaves
    the task `working` for the next attempt. A task already terminal is left alone.
    """
    backend = task_backend(server)
    record = await backend.tasks.get(task_id)
    if record is None or record.terminal:
        return
    if record.cancel_requested:
        await settle(backend, task_id, CANCELLED, message="Cancelled at the client's request")
        return
    name = record.request.get("tool")
    tool = server._registry.get("tools", name) if isinstance(name, str) else None
    if tool is None:
        message = f"Unknown tool: {name}"
        await settle(backend, task_id, FAILED, message=message, error={"code": INVALID_PARAMS, "message": message})
        return
    call = task_call(record)
    context = server._make_context(call)
    context._task = TaskInputs(backend, task_id, call)
    watch = _Watch()
    outcome: tuple[str, Any] = ("cancelled", None)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as group:
            group.start_soon(_watch_cancel, backend, task_id, scope, watch)
            try:
                outcome = await _attempt(tool, record, context, retry=tool.retryable and not last_attempt)
            finally:
                group.cancel_scope.cancel()
    kind, value = outcome
    if watch.cancelled:
        await settle(backend, task_id, CANCELLED, message="Cancelled at the client's request")
    elif kind == "retry":
        raise RetryTask(f"task {task_id}: tool {tool.name!r} raised; it may be retried") from value
    elif kind == "result":
        await settle(backend, task_id, COMPLETED, result=value)
    else:
        await settle(backend, task_id, FAILED, message=f"Tool execution failed: {value['message']}", error=value)


def task_call(record: TaskRecord) -> Call:
    """The `Call` a task's tool runs with: its request as stored, no transport, the early answers loaded."""
    request = record.request
    revision = REVISIONS.get(request.get("revision") or "") or REVISIONS["2026-07-28"]
    meta = request.get("meta")
    params = {"name": request.get("tool"), "arguments": request.get("arguments"), "_meta": meta or {}}
    call = build_call({"method": "tools/call", "id": request.get("request_id"), "params": params}, revision)
    inputs = request.get("inputs")
    if isinstance(inputs, dict):
        call.state.inputs.update(inputs)
    return call


async def _attempt(tool: Tool, record: TaskRecord, context: Any, *, retry: bool) -> tuple[str, Any]:
    """("result", CallToolResult) | ("error", JSON-RPC error) | ("retry", exception); never raises."""
    structured = REVISIONS.get(record.request.get("revision") or "", REVISIONS["2026-07-28"]).structured_output
    token = raise_unexpected.set(retry)
    try:
        return "result", await tool.run(record.request.get("arguments"), context, structured=structured)
    except MCPError as exc:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            error["data"] = exc.data
        return "error", error
    except Exception as exc:
        if retry:
            return "retry", exc
        logger.exception("Task %s of tool %r failed", record.task_id, tool.name)
        return "error", {"code": INTERNAL_ERROR, "message": "Internal error"}
    finally:
        raise_unexpected.reset(token)


async def _watch_cancel(backend: Backend, task_id: str, scope: anyio.CancelScope, watch: _Watch) -> None:
    """Cancel `scope` once `tasks/cancel` is asked (or the task expires or is ended elsewhere)."""
    subscription = backend.bus.subscribe(task_channel(task_id), buffer=16)
    try:
        while True:
            # Subscribed before reading, so a cancel between the two is not missed.
            record = await backend.tasks.get(task_id)
            if record is None or record.cancel_requested or record.terminal:
                watch.cancelled = True
                scope.cancel()
                return
            subscription = await _next_message(backend, subscription, task_id)
    finally:
        subscription.close()


async def _next_message(backend: Backend, subscription: Any, task_id: str) -> Any:
    """Wait for news on the task's channel (or RECHECK_SECONDS); the subscription to keep using."""
    with anyio.move_on_after(RECHECK_SECONDS):
        try:
            await subscription.receive()
        except anyio.EndOfStream:
            # Dropped (overflow) or the bus closed: a fresh one, after a pause so a closed bus cannot spin.
            subscription.close()
            await anyio.sleep(RECHECK_SECONDS)
            return backend.bus.subscribe(task_channel(task_id), buffer=16)
    return subscription


class TaskInputs:
    """`ctx._task` inside a task: input requests go through the task record, progress to `statusMessage`."""

    def __init__(self, backend: Backend, task_id: str, call: Call) -> None:
        self.backend = backend
        self.task_id = task_id
        self.call = call
        self.waiting = 0

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.waiting:
            return  # the task shows what it waits for; progress resumes with it
        text = message if message is not None else (f"{progress:g}/{total:g}" if total else f"{progress:g}")
        await settle(self.backend, self.task_id, WORKING, message=text)

    async def ask_all(self, specs: dict[str, InputSpec]) -> dict[str, Any]:
        """Answers for `specs`: early ones (asked before the task existed), else via `input_required`."""
        results: dict[str, Any] = {}
        missing: dict[str, InputSpec] = {}
        for key, spec in specs.items():
            early = self.call.state.inputs.get(key)
            parsed = spec.parse(early) if early is not None else None
            if parsed is None:
                missing[key] = spec
            else:
                results[key] = parsed
        if missing:
            self.waiting += 1
            try:
                results.update(await self._ask(missing))
            finally:
                self.waiting -= 1
        return results

    async def _ask(self, specs: dict[str, InputSpec]) -> dict[str, Any]:
        store = self.backend.tasks
        subscription = self.backend.bus.subscribe(task_channel(self.task_id), buffer=16)
        try:
            try:
                record = await store.add_input_requests(self.task_id, {k: s.request() for k, s in specs.items()})
            except ValueError as exc:
                raise MCPError(INTERNAL_ERROR, f"The task cannot ask for input: {exc}") from None
            if record is None:
                # Terminal or gone: the cancel watcher ends this run in a moment.
                await anyio.sleep_forever()
            assert record is not None
            await announce(self.backend, record)
            answers: dict[str, Any] = {}
            while len(answers) < len(specs):
                taken = await store.take_input_responses(self.task_id, [k for k in specs if k not in answers])
                for key, answer in taken.items():
                    parsed = specs[key].parse(answer)
                    if parsed is None:
                        raise MCPError(INVALID_PARAMS, f"The answer to input request {key!r} is malformed")
                    answers[key] = parsed
                if taken:
                    fresh = await store.get(self.task_id)
                    if fresh is not None:
                        await announce(self.backend, fresh)
                    continue
                subscription = await _next_message(self.backend, subscription, self.task_id)
            return answers
        finally:
            subscription.close()
