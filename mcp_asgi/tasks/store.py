"""Tasks of the `io.modelcontextprotocol/tasks` extension as plain data behind a store.

A task is a record: who created it, its status, the input requests it waits on, the
answers the client gave, its final result or error, and whether cancellation was
asked. Whoever runs the tool (this process, or a job engine's worker process) and
whoever answers `tasks/get`, `tasks/update` and `tasks/cancel` (any web worker) meet
only here and on the bus, so the in-memory store is the one-process case of the
Redis one (`mcp_asgi.tasks.redis_store.RedisTaskStore`).

The store does not publish: the runtime (`mcp_asgi.tasks.runtime`), through which
every change goes, announces each one on the backend's bus on `task_channel(id)` as
`{"task": record.to_dict()}`, so a runner waiting for input or for a cancel, and the
`subscriptions/listen` streams watching the task, wake at once on any worker.

Bounded: a store holds at most `max_tasks` live records (creating one past that is a
503) and a record's input requests and responses are capped in number.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

from mcp_asgi.principal import same_principal

WORKING = "working"
INPUT_REQUIRED = "input_required"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = frozenset({WORKING, INPUT_REQUIRED, COMPLETED, FAILED, CANCELLED})
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

# Same "anyone" sentinel idea as the session store: `get(..., principal=ANYONE)` skips the check
# (the runner reads its own task; a request reads with its principal).
ANYONE: Any = object()


def new_task_id() -> str:
    """An unguessable task id (the spec lets servers treat it as a bearer token): 192 random bits."""
    return secrets.token_urlsafe(24)


def task_channel(task_id: str) -> str:
    """The bus channel on which every change of one task is announced."""
    return f"task:{task_id}"


def iso(epoch: float) -> str:
    """An ISO 8601 UTC timestamp, as `createdAt` / `lastUpdatedAt` are written on the wire."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class TaskRecord:
    task_id: str
    # Who created it (`mcp_asgi.principal.principal_of`); anyone else is told "not found".
    principal: str | None
    status: str = WORKING
    status_message: str | None = None
    # Wall-clock epoch seconds: tasks outlive processes, so no monotonic clock here.
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    # Outstanding server-to-client requests: key -> {"method": ..., "params": ...}.
    input_requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Answers the client sent for outstanding keys, not yet taken by the runner.
    input_responses: dict[str, Any] = field(default_factory=dict)
    # Every key ever issued: a key is never reused within a task (the spec's rule).
    issued_keys: set[str] = field(default_factory=set)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel_requested: bool = False
    # What a runner on another process needs to run the call: the tool, its arguments, the
    # request's `_meta`, the protocol revision and the client capabilities of the request.
    request: dict[str, Any] = field(default_factory=dict)

    max_input_requests: ClassVar[int] = 16

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def expired(self, now: float | None = None) -> bool:
        if self.ttl_ms is None:
            return False
        return (time.time() if now is None else now) > self.created_at + self.ttl_ms / 1000

    def to_wire(self) -> dict[str, Any]:
        """The `DetailedTask` that `tasks/get` answers and `notifications/tasks` carries (no `resultType`)."""
        wire: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": iso(self.created_at),
            "lastUpdatedAt": iso(self.updated_at),
            "ttlMs": self.ttl_ms,
        }
        if self.status_message is not None:
            wire["statusMessage"] = self.status_message
        if self.poll_interval_ms is not None:
            wire["pollIntervalMs"] = self.poll_interval_ms
        if self.status == INPUT_REQUIRED:
            # An answered request is no longer outstanding, even before the runner takes the answer
            # (`tasks/update` then `tasks/get` must not show it again).
            wire["inputRequests"] = {
                key: request for key, request in self.input_requests.items() if key not in self.input_responses
            }
            if not wire["inputRequests"]:
                wire["status"] = WORKING
        elif self.status == COMPLETED and self.result is not None:
            wire["result"] = self.result
        elif self.status == FAILED and self.error is not None:
            wire["error"] = self.error
        return wire

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for a shared store and the bus)."""
        return {
            "task_id": self.task_id,
            "principal": self.principal,
            "status": self.status,
            "status_message": self.status_message,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ttl_ms": self.ttl_ms,
            "poll_interval_ms": self.poll_interval_ms,
            "input_requests": self.input_requests,
            "input_responses": self.input_responses,
            "issued_keys": sorted(self.issued_keys),
            "result": self.result,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "request": self.request,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        data = dict(data)
        data["issued_keys"] = set(data.get("issued_keys") or ())
        return cls(**data)

    def copy(self) -> TaskRecord:
        # Deep: a caller changing the copy's `request` or `result` must not change the stored record.
        return TaskRecord.from_dict(deepcopy(self.to_dict()))


class TaskStore(Protocol):
    """Where tasks live. Every method returns copies; every change is field-level and atomic.

    A record past its TTL is gone for every method (as if never created). A record in a terminal
    status never changes status again (`set_status` on it returns None and changes nothing).
    A shared store that cannot be reached raises `mcp_asgi.bus.backend_unavailable(...)` (503).
    """

    async def create(self, record: TaskRecord) -> None:
        """Store a new task; it is readable by `get` before this returns (the spec's durability rule).

        Raises `MCPError(-32000, http_status=503)` when the store is full.
        """
        ...

    async def get(self, task_id: str, *, principal: Any = ANYONE) -> TaskRecord | None:
        """The task, or None when unknown, expired, or created by another principal."""
        ...

    async def set_status(
        self,
        task_id: str,
        status: str,
        *,
        message: str | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> TaskRecord | None:
        """Move a non-terminal task to `status` (also `working` <-> `input_required`); the new record.

        None when the task is unknown, expired or already terminal. Moving to a terminal status clears
        the outstanding input requests and responses. `updated_at` becomes now.
        """
        ...

    async def add_input_requests(self, task_id: str, requests: dict[str, dict[str, Any]]) -> TaskRecord | None:
        """Add outstanding input requests and move the task to `input_required`; the new record.

        None when the task is unknown, expired or terminal. `ValueError` when a key was issued before
        in this task, or when it would hold more than `TaskRecord.max_input_requests` outstanding.
        """
        ...

    async def add_input_responses(
        self, task_id: str, responses: dict[str, Any], *, principal: Any = ANYONE
    ) -> TaskRecord | None:
        """Record the client's answers (`tasks/update`); answers to keys not outstanding are ignored.

        None when the task is unknown/expired/another principal's. A terminal task accepts nothing but
        still returns its record. The status is not changed here: the runner moves it back to
        `working` when it takes the answers.
        """
        ...

    async def take_input_responses(self, task_id: str, keys: list[str]) -> dict[str, Any]:
        """Remove and return the answers present for `keys`; a key answered is no longer outstanding.

        When no input request stays outstanding afterwards and the task is `input_required`, the task
        moves back to `working` in the same atomic step.
        """
        ...

    async def request_cancel(self, task_id: str, *, principal: Any = ANYONE) -> TaskRecord | None:
        """Mark cancellation as asked (`tasks/cancel`); the record, or None when unknown/expired/another's.

        A terminal task is returned unchanged (cancel is an idempotent ack).
        """
        ...

    async def delete(self, task_id: str) -> bool:
        """Forget a task now; whether it existed."""
        ...


class InMemoryTaskStore:
    """Tasks in this process: the default, right for a single worker.

    Expired records are dropped when touched and by `purge()`, which `create` runs when the
    store is full before refusing.
    """

    def __init__(self, *, max_tasks: int = 10_000) -> None:
        self.max_tasks = max_tasks
        self._tasks: OrderedDict[str, TaskRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tasks)

    def purge(self) -> int:
        now = time.time()
        gone = [task_id for task_id, record in self._tasks.items() if record.expired(now)]
        for task_id in gone:
            del self._tasks[task_id]
        return len(gone)

    def _live(self, task_id: str, principal: Any = ANYONE) -> TaskRecord | None:
        record = self._tasks.get(task_id)
        if record is None:
            return None
        if record.expired():
            del self._tasks[task_id]
            return None
        if principal is not ANYONE and not same_principal(record.principal, principal):
            return None
        return record

    async def create(self, record: TaskRecord) -> None:
        if len(self._tasks) >= self.max_tasks and not self.purge():
            from mcp_asgi.protocol.jsonrpc import MCPError

            raise MCPError(-32000, "Server busy: too many tasks; try again later", http_status=503)
        self._tasks[record.task_id] = record.copy()

    async def get(self, task_id: str, *, principal: Any = ANYONE) -> TaskRecord | None:
        record = self._live(task_id, principal)
        return None if record is None else record.copy()

    async def set_status(
        self,
        task_id: str,
        status: str,
        *,
        message: str | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> TaskRecord | None:
        if status not in STATUSES:
            raise ValueError(f"unknown task status {status!r}")
        record = self._live(task_id)
        if record is None or record.terminal:
            return None
        record.status = status
        record.status_message = message
        if status in TERMINAL:
            record.input_requests.clear()
            record.input_responses.clear()
            record.result = result
            record.error = error
        record.updated_at = time.time()
        return record.copy()

    async def add_input_requests(self, task_id: str, requests: dict[str, dict[str, Any]]) -> TaskRecord | None:
        record = self._live(task_id)
        if record is None or record.terminal:
            return None
        reused = [key for key in requests if key in record.issued_keys]
        if reused:
            raise ValueError(f"input request keys already used in this task: {reused}")
        if len(record.input_requests) + len(requests) > TaskRecord.max_input_requests:
            raise ValueError(f"a task holds at most {TaskRecord.max_input_requests} outstanding input requests")
        record.input_requests.update(requests)
        record.issued_keys.update(requests)
        record.status = INPUT_REQUIRED
        record.updated_at = time.time()
        return record.copy()

    async def add_input_responses(
        self, task_id: str, responses: dict[str, Any], *, principal: Any = ANYONE
    ) -> TaskRecord | None:
        record = self._live(task_id, principal)
        if record is None:
            return None
        if not record.terminal:
            for key, answer in responses.items():
                if key in record.input_requests:
                    record.input_responses[key] = answer
        return record.copy()

    async def take_input_responses(self, task_id: str, keys: list[str]) -> dict[str, Any]:
        record = self._live(task_id)
        if record is None:
            return {}
        taken = {key: record.input_responses.pop(key) for key in keys if key in record.input_responses}
        for key in taken:
            record.input_requests.pop(key, None)
        if taken:
            if not record.input_requests and record.status == INPUT_REQUIRED:
                record.status = WORKING
            record.updated_at = time.time()
        return taken

    async def request_cancel(self, task_id: str, *, principal: Any = ANYONE) -> TaskRecord | None:
        record = self._live(task_id, principal)
        if record is None:
            return None
        if not record.terminal:
            record.cancel_requested = True
        return record.copy()

    async def delete(self, task_id: str) -> bool:
        return self._tasks.pop(task_id, None) is not None
