"""Tasks in Redis: `RedisTaskStore`, so any worker answers `tasks/get|update|cancel` and results outlive workers.

Needs the extra `mcp-asgi[redis]`; `RedisBackend` builds one as `backend.tasks` and binds it to
the worker's one connection pool in `start()`.

A task is four keys under `prefix + "task:" + id`: a hash of its fields (each JSON-encoded,
except `status`, kept plain so the scripts can test it), and beside it the outstanding input
requests (`:requests`, a hash key -> JSON), the client's answers not yet taken (`:responses`)
and every input key ever issued (`:issued`, a set, so a key is never reused). All four expire
together through Redis key expiry: a task is gone, for every method, once its TTL has passed,
with no sweeper. Redis keeps a task at most `max_ttl` seconds (default one day), also one created
with `ttl_ms=None` (unlimited for the spec): a shared store must not fill up with tasks nobody
reads. The runtime should offer clients no TTL above it.

The `max_tasks` cap counts a sorted set `prefix + "tasks"` (member: task id, score: when it
expires, in Redis's clock), as the session store does: creating a task first drops the entries
whose time has passed, then counts with ZCARD. Every method is one Lua script, atomic in Redis,
so a `tasks/update` on one worker and the runner taking answers on another never lose a change.
Scripts compare and move only control fields (status, cancel flag, keys); the tool's result and
the client's answers stay the JSON text Python wrote, never decoded in Redis.

Every call has the backend's timeout; an unreachable or hung Redis raises the 503 `MCPError`
of `mcp_asgi.bus.backend_unavailable` within it, never a hang. Redis Cluster is not supported
(a script touches one task's keys and the index).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from mcp_asgi.redis_scripted import RedisScripted
from mcp_asgi.tasks.store import ANYONE, STATUSES, TERMINAL, TaskRecord

if TYPE_CHECKING:
    from redis.asyncio import Redis

# Redis's clock in milliseconds: every worker agrees on when an index entry is stale.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# Shared by the scripts: KEYS[1..4] are the task's hash, requests, responses, issued keys.
_RECORD = """
local function terminal(status)
  return status == 'completed' or status == 'failed' or status == 'cancelled'
end
local function record()
  return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
          redis.call('SMEMBERS', KEYS[4])}
end
-- A key created after the task (its first input request) gets the task's remaining lifetime.
local function same_ttl(key)
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
-- false when missing, or another principal's (ARGV[1] '1' asks for the check against ARGV[2]).
local function visible()
  if redis.call('EXISTS', KEYS[1]) == 0 then return false end
  if ARGV[1] == '1' and redis.call('HGET', KEYS[1], 'principal') ~= ARGV[2] then return false end
  return true
end
"""

# KEYS: 4 task keys, index. ARGV: ttl ms, max tasks, id, n field pairs, n request pairs, n response pairs,
# n issued, then the pairs and keys in that order. 1 created, 0 the store is full, -1 the id exists.
_CREATE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local ttl = tonumber(ARGV[1])
local at = 8
for k = 1, 4 do
  local n = tonumber(ARGV[3 + k])
  if n > 0 then
    if k == 4 then redis.call('SADD', KEYS[4], unpack(ARGV, at, at + n - 1))
    else redis.call('HSET', KEYS[k], unpack(ARGV, at, at + 2 * n - 1)) n = 2 * n end
    redis.call('PEXPIRE', KEYS[k], ttl)
    at = at + n
  end
end
redis.call('ZADD', KEYS[5], now + ttl, ARGV[3])
return 1
"""
)

# ARGV: check principal ('1'/'0'), principal JSON.
_GET = _RECORD + "if not visible() then return false end return record()"

# ARGV: status, message JSON, updated_at, result JSON, error JSON. The new record, or false.
_SET_STATUS = (
    _RECORD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 or terminal(redis.call('HGET', KEYS[1], 'status')) then return false end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_message', ARGV[2], 'updated_at', ARGV[3])
if terminal(ARGV[1]) then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'result', ARGV[4], 'error', ARGV[5])
end
return record()
"""
)

# ARGV: updated_at, max outstanding, key, request JSON, ... The new record; false; {'reused', keys}; {'full'}.
_ADD_REQUESTS = (
    _RECORD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 or terminal(redis.call('HGET', KEYS[1], 'status')) then return false end
local reused = {}
for i = 3, #ARGV, 2 do
  if redis.call('SISMEMBER', KEYS[4], ARGV[i]) == 1 then reused[#reused + 1] = ARGV[i] end
end
if #reused > 0 then return {'reused', reused} end
if redis.call('HLEN', KEYS[2]) + (#ARGV - 2) / 2 > tonumber(ARGV[2]) then return {'full'} end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('SADD', KEYS[4], ARGV[i])
end
same_ttl(KEYS[2])
same_ttl(KEYS[4])
redis.call('HSET', KEYS[1], 'status', 'input_required', 'updated_at', ARGV[1])
return record()
"""
)

# ARGV: check principal, principal JSON, key, answer JSON, ... The record (answers to keys not
# outstanding dropped; a terminal task takes none), or false.
_ADD_RESPONSES = (
    _RECORD
    + """
if not visible() then return false end
if not terminal(redis.call('HGET', KEYS[1], 'status')) then
  local added = false
  for i = 3, #ARGV, 2 do
    if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
      redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
      added = true
    end
  end
  if added then same_ttl(KEYS[3]) end
end
return record()
"""
)

# ARGV: updated_at, key, ... A flat list key, answer JSON, ... of what was taken.
_TAKE_RESPONSES = (
    _RECORD
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local taken = {}
for i = 2, #ARGV do
  local answer = redis.call('HGET', KEYS[3], ARGV[i])
  if answer then
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    taken[#taken + 1] = ARGV[i]
    taken[#taken + 1] = answer
  end
end
if #taken > 0 then
  if redis.call('HLEN', KEYS[2]) == 0 and redis.call('HGET', KEYS[1], 'status') == 'input_required' then
    redis.call('HSET', KEYS[1], 'status', 'working')
  end
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
end
return taken
"""
)

# ARGV: check principal, principal JSON. The record, or false; a terminal task is left as it is.
_REQUEST_CANCEL = (
    _RECORD
    + """
if not visible() then return false end
if not terminal(redis.call('HGET', KEYS[1], 'status')) then redis.call('HSET', KEYS[1], 'cancel_requested', '1') end
return record()
"""
)

# KEYS: 4 task keys, index. ARGV: id. 1 if the task existed.
_DELETE = """
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
return existed
"""

# Fields of the hash that are not JSON text (the scripts read or write them as they are).
_PLAIN = ("status", "cancel_requested")


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _pairs(items: dict[str, Any]) -> list[str]:
    return [part for name, value in items.items() for part in (name, _encode(value))]


def _decode_hash(flat: list[str]) -> dict[str, Any]:
    return {flat[i]: json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}


class RedisTaskStore(RedisScripted):
    """Task records in Redis, shared by every worker (web or job engine) with the same prefix.

    Bound to a client by `RedisBackend.start()` (or `bind(client)`): the worker's one connection
    pool. `max_tasks` bounds the live tasks (past it, `create` is a 503); `max_ttl` (seconds) is
    the longest a task lives in Redis (also one created with `ttl_ms=None`).
    """

    what = "task store (Redis)"
    sources = {
        "create": _CREATE,
        "get": _GET,
        "set_status": _SET_STATUS,
        "add_requests": _ADD_REQUESTS,
        "add_responses": _ADD_RESPONSES,
        "take_responses": _TAKE_RESPONSES,
        "request_cancel": _REQUEST_CANCEL,
        "delete": _DELETE,
    }

    def __init__(
        self,
        client: Redis | None = None,
        *,
        prefix: str = "mcp-asgi:",
        max_tasks: int = 10_000,
        max_ttl: float = 86_400.0,
        timeout: float = 2.0,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError("`prefix` must be a string")
        if max_tasks < 1:
            raise ValueError("`max_tasks` must be at least 1")
        if not max_ttl > 0:
            raise ValueError("`max_ttl` must be a positive number of seconds")
        if not timeout > 0:
            raise ValueError("`timeout` must be a positive number of seconds")
        self.prefix = prefix
        self.max_tasks = max_tasks
        self.max_ttl = max_ttl
        self.timeout = timeout
        self._index = prefix + "tasks"
        self._unbound()
        if client is not None:
            self.bind(client)

    def _keys(self, task_id: str) -> list[str]:
        key = self.prefix + "task:" + task_id
        return [key, key + ":requests", key + ":responses", key + ":issued"]

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._guarded(name, lambda client: self._scripts[name](keys=keys, args=args, client=client))

    async def _visible(self, name: str, task_id: str, principal: Any, args: list[Any]) -> Any:
        check = ["0", ""] if principal is ANYONE else ["1", _encode(principal)]
        return await self._run(name, self._keys(task_id), [*check, *args])

    def _ttl_ms(self, record: TaskRecord) -> int:
        cap = max(1, round(self.max_ttl * 1000))
        if record.ttl_ms is None:
            return cap
        # What is left of the TTL, counted from the record's creation; at least 1 (PEXPIRE 0 deletes).
        return max(1, min(cap, round(record.created_at * 1000 + record.ttl_ms - time.time() * 1000)))

    def _record(self, task_id: str, found: list[Any]) -> TaskRecord:
        flat, requests, responses, issued = found
        pairs = dict(zip(flat[0::2], flat[1::2], strict=True))
        plain = {name: pairs.pop(name) for name in _PLAIN if name in pairs}
        fields = {name: json.loads(value) for name, value in pairs.items()}
        return TaskRecord(
            task_id=task_id,
            principal=fields.get("principal"),
            status=plain.get("status", "working"),
            status_message=fields.get("status_message"),
            created_at=fields.get("created_at", 0.0),
            updated_at=fields.get("updated_at", 0.0),
            ttl_ms=fields.get("ttl_ms"),
            poll_interval_ms=fields.get("poll_interval_ms"),
            input_requests=_decode_hash(requests),
            input_responses=_decode_hash(responses),
            issued_keys=set(issued),
            result=fields.get("result"),
            error=fields.get("error"),
            cancel_requested=plain.get("cancel_requested") == "1",
            request=fields.get("request") or {},
        )

    async def create(self, record: TaskRecord) -> None:
        fields = {
            name: value
            for name, value in record.to_dict().items()
            if name not in ("task_id", "input_requests", "input_responses", "issued_keys", *_PLAIN)
        }
        pairs = [*_pairs(fields), "status", record.status, "cancel_requested", "1" if record.cancel_requested else "0"]
        requests, responses = _pairs(record.input_requests), _pairs(record.input_responses)
        issued = sorted(record.issued_keys | set(record.input_requests))
        counts = [len(pairs) // 2, len(requests) // 2, len(responses) // 2, len(issued)]
        args = [self._ttl_ms(record), self.max_tasks, record.task_id, *counts, *pairs, *requests, *responses, *issued]
        created = await self._run("create", [*self._keys(record.task_id), self._index], args)
        if created == 0:
            from mcp_asgi.protocol.jsonrpc import MCPError

            raise MCPError(-32000, "Server busy: too many tasks; try again later", http_status=503)
        if created == -1:
            raise ValueError(f"task {record.task_id!r} already exists")

    async def get(self, task_id: str, *, principal: Any = ANYONE) -> TaskRecord | None:
        found = await self._visible("get", task_id, principal, [])
        return self._record(task_id, found) if found else None

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
        terminal = status in TERMINAL
        args = [status, _encode(message), _encode(time.time())]
        args += [_encode(result if terminal else None), _encode(error if terminal else None)]
        found = await self._run("set_status", self._keys(task_id), args)
        return self._record(task_id, found) if found else None

    async def add_input_requests(self, task_id: str, requests: dict[str, dict[str, Any]]) -> TaskRecord | None:
        args = [_encode(time.time()), TaskRecord.max_input_requests, *_pairs(requests)]
        found = await self._run("add_requests", self._keys(task_id), args)
        if not found:
            return None
        if found[0] == "reused":
            raise ValueError(f"input request keys already used in this task: {sorted(found[1])}")
        if found[0] == "full":
            raise ValueError(f"a task holds at most {TaskRecord.max_input_requests} outstanding input requests")
        return self._record(task_id, found)

    async def add_input_responses(
        self, task_id: str, responses: dict[str, Any], *, principal: Any = ANYONE
    ) -> TaskRecord | None:
        found = await self._visible("add_responses", task_id, principal, _pairs(responses))
        return self._record(task_id, found) if found else None

    async def take_input_responses(self, task_id: str, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        taken = await self._run("take_responses", self._keys(task_id), [_encode(time.time()), *keys])
        return _decode_hash(taken)

    async def request_cancel(self, task_id: str, *, principal: Any = ANYONE) -> TaskRecord | None:
        found = await self._visible("request_cancel", task_id, principal, [])
        return self._record(task_id, found) if found else None

    async def delete(self, task_id: str) -> bool:
        return bool(await self._run("delete", [*self._keys(task_id), self._index], [task_id]))
