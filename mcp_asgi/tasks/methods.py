"""The tasks extension's protocol surface: task creation on `tools/call`, `tasks/*`, `notifications/tasks`.

Installed on the protocol core by the server (`ProtocolCore.tasks`); the core calls
`call_tool` for tools declared with `task=...`, `advertise` from `server/discover` and
`listen` when `subscriptions/listen` asks for `taskIds`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from mcp_asgi.principal import principal_of
from mcp_asgi.protocol.jsonrpc import MISSING_CLIENT_CAPABILITY, MCPError, invalid_params, notification
from mcp_asgi.protocol.mrtr import InputRequired
from mcp_asgi.tasks.runtime import announce, task_backend
from mcp_asgi.tasks.store import TaskRecord, new_task_id, task_channel

if TYPE_CHECKING:
    from mcp_asgi.components.tools import Tool
    from mcp_asgi.protocol.dispatch import Call, ProtocolCore
    from mcp_asgi.server import MCPServer
    from mcp_asgi.tasks.runner import TaskRunner

logger = logging.getLogger("mcp_asgi")

EXTENSION = "io.modelcontextprotocol/tasks"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
# How many tasks one `subscriptions/listen` stream may watch.
MAX_WATCHED_TASKS = 100


class RunAsTask(InputRequired):
    """Raised by `ctx.run_as_task()`: finish this `tools/call` as a task (caught by `TaskSupport`)."""

    def __init__(self) -> None:
        Exception.__init__(self, "run as a task")
        self.requests: dict[str, dict[str, Any]] = {}


def missing_extension(what: str) -> MCPError:
    """-32021 naming the extension, as the spec's example shows."""
    return MCPError(
        MISSING_CLIENT_CAPABILITY,
        f"Missing required client capability: {what} needs the client to declare the {EXTENSION} extension",
        {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
        http_status=400,
    )


def declares_tasks(call: Call) -> bool:
    """Whether this request's `_meta` client capabilities declare the extension (2026-07-28 requests only)."""
    if not call.revision.stateless:
        return False
    extensions = call.client_capabilities.get("extensions")
    return isinstance(extensions, dict) and isinstance(extensions.get(EXTENSION), dict)


def _principal(call: Call) -> str | None:
    return principal_of(call.request.scope) if call.request is not None else None


class TaskSupport:
    """The tasks extension of one server: creates tasks and answers `tasks/get|update|cancel`."""

    def __init__(self, server: MCPServer, runner: TaskRunner, *, ttl_ms: int | None, poll_interval_ms: int) -> None:
        self.server = server
        self.runner = runner
        self.ttl_ms = ttl_ms
        self.poll_interval_ms = poll_interval_ms

    def install(self, core: ProtocolCore) -> None:
        """Hook into `core`: before MCP middleware wraps its handlers, so the middleware sees these too."""
        core.tasks = self
        handlers: dict[str, Callable[[Call], Awaitable[dict[str, Any]]]] = {
            "tasks/get": self.get,
            "tasks/update": self.update,
            "tasks/cancel": self.cancel,
        }
        core._base_handlers.update(handlers)
        if core._handlers is not core._base_handlers:
            core._handlers.update(handlers)

    # Task creation.
    async def call_tool(self, tool: Tool, call: Call) -> dict[str, Any]:
        """`tools/call` of a task tool: a `CreateTaskResult` for a declaring client, else a blocking result."""
        if not call.revision.stateless:
            return await self._run_here(tool, call, may_switch=False)
        declared = declares_tasks(call)
        if not declared:
            if tool.task == "required":
                raise missing_extension(f"tool '{tool.name}'")
            return await self._run_here(tool, call, may_switch=False)
        if tool.task_start == "call":
            return await self.create(tool, call)
        try:
            return await self._run_here(tool, call, may_switch=True)
        except RunAsTask:
            return await self.create(tool, call)

    async def _run_here(self, tool: Tool, call: Call, *, may_switch: bool) -> dict[str, Any]:
        context = self.server._core.context(call) if tool.arguments.needs_context else None
        if context is not None and may_switch:
            context._may_run_as_task = True
        return await tool.run(call.params.get("arguments"), context, structured=call.revision.structured_output)

    async def create(self, tool: Tool, call: Call) -> dict[str, Any]:
        """Store a new task for this call, hand it to the runner, answer with its handle."""
        backend = task_backend(self.server)
        record = TaskRecord(
            task_id=new_task_id(),
            principal=_principal(call),
            ttl_ms=_within_store(self.ttl_ms, backend.tasks),
            poll_interval_ms=self.poll_interval_ms,
            request={
                "tool": tool.name,
                "arguments": call.params.get("arguments"),
                "meta": call.meta,
                "revision": call.revision.version,
                "capabilities": call.client_capabilities,
                # Answers gathered by MRTR before the task existed: the run sees them again.
                "inputs": dict(call.state.inputs),
                "request_id": call.request_id,
            },
        )
        # Readable by tasks/get before we answer (the spec's durability rule): the store guarantees it.
        await backend.tasks.create(record)
        try:
            await self.runner.submit(self.server, record.task_id)
        except BaseException:
            await backend.tasks.delete(record.task_id)
            raise
        return {**record.to_wire(), "resultType": "task"}

    def advertise(self, capabilities: dict[str, Any]) -> None:
        if any(tool.task for tool in self.server._registry.snapshot("tools")):
            capabilities.setdefault("extensions", {})[EXTENSION] = {}

    # tasks/get, tasks/update, tasks/cancel.
    def _task_id(self, call: Call) -> str:
        if not declares_tasks(call):
            raise missing_extension(call.method)
        task_id = call.params.get("taskId")
        if not isinstance(task_id, str):
            raise invalid_params(f"Invalid params: {call.method} needs a string `taskId`")
        return task_id

    async def get(self, call: Call) -> dict[str, Any]:
        task_id = self._task_id(call)
        record = await task_backend(self.server).tasks.get(task_id, principal=_principal(call))
        if record is None:
            raise _not_found()
        return record.to_wire()

    async def update(self, call: Call) -> dict[str, Any]:
        task_id = self._task_id(call)
        responses = call.params.get("inputResponses")
        if not isinstance(responses, dict):
            raise invalid_params("Invalid params: tasks/update needs an `inputResponses` object")
        backend = task_backend(self.server)
        record = await backend.tasks.add_input_responses(task_id, responses, principal=_principal(call))
        if record is None:
            raise _not_found()
        if not record.terminal and responses:
            await announce(backend, record)
        return {}

    async def cancel(self, call: Call) -> dict[str, Any]:
        task_id = self._task_id(call)
        backend = task_backend(self.server)
        record = await backend.tasks.request_cancel(task_id, principal=_principal(call))
        if record is None:
            raise _not_found()
        if not record.terminal:
            await announce(backend, record)
        return {}

    # notifications/tasks on subscriptions/listen.
    async def listen(self, call: Call, task_ids: Any) -> tuple[list[str], TaskWatcher]:
        if not declares_tasks(call):
            raise missing_extension("notifications/tasks on subscriptions/listen")
        if not isinstance(task_ids, list) or not all(isinstance(item, str) for item in task_ids):
            raise invalid_params("Invalid params: notifications.taskIds must be a list of task id strings")
        if len(task_ids) > MAX_WATCHED_TASKS:
            raise invalid_params(f"Invalid params: a stream may watch at most {MAX_WATCHED_TASKS} tasks")
        backend = task_backend(self.server)
        principal = _principal(call)
        watcher = TaskWatcher(backend, principal)
        try:
            for task_id in dict.fromkeys(task_ids):
                # Subscribed before the check, so no change between the two is lost.
                watcher.watch(task_id)
                if await backend.tasks.get(task_id, principal=principal) is None:
                    watcher.unwatch(task_id)
        except BaseException:
            watcher.close()
            raise
        return list(watcher.subscriptions), watcher


def _within_store(ttl_ms: int | None, store: Any) -> int | None:
    """The `ttlMs` to promise: the server's, but never longer than the store keeps a task (its `max_ttl`)."""
    cap = getattr(store, "max_ttl", None)
    if cap is None:
        return ttl_ms
    cap_ms = max(1, round(cap * 1000))
    return cap_ms if ttl_ms is None else min(ttl_ms, cap_ms)


def _not_found() -> MCPError:
    # Unknown, expired and another principal's tasks look the same (the spec's -32602).
    return invalid_params("Failed to retrieve task: Task not found (unknown, expired, or not yours)")


class TaskWatcher:
    """The tasks one `subscriptions/listen` stream watches: one bus subscription each."""

    def __init__(self, backend: Any, principal: str | None) -> None:
        self.backend = backend
        self.principal = principal
        self.subscriptions: dict[str, Any] = {}

    def watch(self, task_id: str) -> None:
        self.subscriptions[task_id] = self.backend.bus.subscribe(task_channel(task_id), buffer=64)

    def unwatch(self, task_id: str) -> None:
        self.subscriptions.pop(task_id).close()

    def close(self) -> None:
        for subscription in self.subscriptions.values():
            subscription.close()
        self.subscriptions.clear()

    async def alongside(
        self, forward: Awaitable[None], send: Callable[[Any], Awaitable[Any]], tag: dict[str, Any]
    ) -> None:
        """Await `forward` (the stream's other notifications) while sending `notifications/tasks`."""
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            for task_id, subscription in self.subscriptions.items():
                group.start_soon(self._pump, task_id, subscription, send, tag)
            try:
                await forward
            except Exception as exc:
                # Raised as it is, not wrapped in the task group's ExceptionGroup.
                failure = exc
            group.cancel_scope.cancel()
        if failure is not None:
            raise failure

    async def _pump(
        self, task_id: str, subscription: Any, send: Callable[[Any], Awaitable[Any]], tag: dict[str, Any]
    ) -> None:
        try:
            # The state now first: a client subscribing late still learns where the task is.
            record = await self.backend.tasks.get(task_id, principal=self.principal)
            if record is not None:
                await send(_task_notification(record, tag))
            async for message in subscription:
                data = message.get("task") if isinstance(message, dict) else None
                if isinstance(data, dict):
                    await send(_task_notification(TaskRecord.from_dict(data), tag))
        except Exception as exc:
            # A client gone or a store unreachable ends this task's notifications, not the stream.
            logger.debug("notifications/tasks for %s stopped: %s", task_id, exc)


def _task_notification(record: TaskRecord, tag: dict[str, Any]) -> dict[str, Any]:
    return notification("notifications/tasks", {**record.to_wire(), "_meta": tag})
