"""`RedisEventStore`: the events of resumable SSE replies in Redis, so any worker resumes any stream.

Needs the extra `mcp-asgi[redis]`; redis-py is imported only when a client is bound.

Layout (P = prefix + "events:"): each stream is a Redis Stream `P s:<id>` whose entries
carry explicit ids `0-<seq>`, seq counted by the stream's meta hash `P m:<id>` (session,
last seq, highest dropped seq, ended). Redis Streams rather than lists because XRANGE
reads "everything after seq N" directly, trimming the oldest entry keeps every other id
valid, and XREAD BLOCK wakes a reader on any worker when an entry is added. The
stream id is random (16 hex digits), so an event id `<stream>:<seq>` is unique within a
session (and across sessions) whichever worker wrote it.

Limits are those of `InMemoryEventStore`, kept exactly across workers: two sorted sets
name the live and the ended streams (score: when they expire, in Redis's own clock), a
hash holds each stream's size and a counter the total. Every change is one Lua script,
so two workers never race; a script first forgets a few streams whose time has passed
(the keys also carry TTLs a little longer, a safety net if nobody calls for a while).
When full, ended streams are forgotten first, soonest to expire first; a live stream is
never evicted for another: a new stream is not recorded (`open_stream` returns None).
A live stream whose worker died expires `live_retention` seconds after its last event.

A live tail (`read` with a timeout) waits with XREAD BLOCK on a pooled connection, in
slices of at most `block_slice` seconds (the connection goes back to the pool between
them, and a forgotten stream is noticed within one slice); at most `max_blocking` tails
of a worker block at once, the others poll every `block_slice`. No connection is held
per stream. Every call has a timeout; an unreachable Redis is the 503 `MCPError`.
The scripts touch keys they are not given, so Redis Cluster is not supported.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

import anyio

from mcp_asgi.protocol.jsonrpc import encode
from mcp_asgi.redis_scripted import RedisScripted
from mcp_asgi.transports.events import Replay, StoredEvent, _is_seq, check_event_limits

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("mcp_asgi")

_WHAT = "event store (Redis)"

# Shared head of every script. ARGV[1] is the key prefix P; the fixed keys derive from it.
_HEAD = """
local P = ARGV[1]
local LIVE, ENDED, SIZES, TOTAL = P .. 'live', P .. 'ended', P .. 'sizes', P .. 'total'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function drop(id)
  local n = tonumber(redis.call('HGET', SIZES, id) or '0')
  if n > 0 then redis.call('DECRBY', TOTAL, n) end
  redis.call('HDEL', SIZES, id)
  redis.call('ZREM', LIVE, id)
  redis.call('ZREM', ENDED, id)
  local session = redis.call('HGET', P .. 'm:' .. id, 'session')
  if session then redis.call('SREM', P .. 'x:' .. session, id) end
  redis.call('DEL', P .. 's:' .. id, P .. 'm:' .. id)
end
local function sweep()
  for _, set in ipairs({LIVE, ENDED}) do
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, 64)) do drop(id) end
  end
end
local function evict_ended()
  local first = redis.call('ZRANGE', ENDED, 0, 0)
  if #first == 0 then return false end
  drop(first[1])
  return true
end
local function expire(id, ms, margin)
  redis.call('PEXPIRE', P .. 's:' .. id, ms + margin)
  redis.call('PEXPIRE', P .. 'm:' .. id, ms + margin)
end
"""

# ARGV: P, stream id, session id, max streams, live ms, margin ms, session index ms. 1 opened, 0 full.
_OPEN = (
    _HEAD
    + """
sweep()
local id = ARGV[2]
if redis.call('ZCARD', LIVE) + redis.call('ZCARD', ENDED) >= tonumber(ARGV[4]) and not evict_ended() then
  return 0
end
local live, margin = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('HSET', P .. 'm:' .. id, 'session', ARGV[3], 'last', 0, 'dropped', 0)
expire(id, live, margin)
redis.call('ZADD', LIVE, now + live, id)
redis.call('HSET', SIZES, id, 0)
local index = P .. 'x:' .. ARGV[3]
redis.call('SADD', index, id)
redis.call('PEXPIRE', index, tonumber(ARGV[7]))
return 1
"""
)

# ARGV: P, stream id, message JSON ('' for the priming event), size, max events, max bytes per stream,
# max total bytes, live ms, margin ms. The event's seq, or 0 if the stream is (now) forgotten.
_APPEND = (
    _HEAD
    + """
sweep()
local id, size = ARGV[2], tonumber(ARGV[4])
local key, meta = P .. 's:' .. id, P .. 'm:' .. id
if not redis.call('ZSCORE', LIVE, id) or redis.call('EXISTS', meta) == 0 then return 0 end
if size > tonumber(ARGV[6]) then drop(id) return 0 end
local own = tonumber(redis.call('HGET', SIZES, id) or '0')
local function pop_oldest()
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  local n = tonumber(first[2][4])
  redis.call('XDEL', key, first[1])
  redis.call('HSET', meta, 'dropped', string.sub(first[1], 3))
  own = own - n
  redis.call('DECRBY', TOTAL, n)
end
while redis.call('XLEN', key) > 0 and
    (redis.call('XLEN', key) >= tonumber(ARGV[5]) or own + size > tonumber(ARGV[6])) do
  pop_oldest()
end
while tonumber(redis.call('GET', TOTAL) or '0') + size > tonumber(ARGV[7]) do
  if not evict_ended() then
    if redis.call('XLEN', key) == 0 then drop(id) return 0 end
    pop_oldest()
  end
end
local seq = redis.call('HINCRBY', meta, 'last', 1)
redis.call('XADD', key, '0-' .. seq, 'm', ARGV[3], 'n', size)
redis.call('HSET', SIZES, id, own + size)
redis.call('INCRBY', TOTAL, size)
local live = tonumber(ARGV[8])
redis.call('ZADD', LIVE, now + live, id)
expire(id, live, tonumber(ARGV[9]))
return seq
"""
)

# ARGV: P, stream id, delay ms, margin ms. The end is an entry too ('e'), so XREAD wakes blocked readers.
_END = (
    _HEAD
    + """
local id = ARGV[2]
local key, meta = P .. 's:' .. id, P .. 'm:' .. id
if not redis.call('ZSCORE', LIVE, id) or redis.call('EXISTS', meta) == 0 then return 0 end
local seq = redis.call('HINCRBY', meta, 'last', 1)
redis.call('XADD', key, '0-' .. seq, 'e', 1, 'n', 0)
redis.call('HSET', meta, 'ended', 1)
redis.call('ZREM', LIVE, id)
local delay = tonumber(ARGV[3])
redis.call('ZADD', ENDED, now + delay, id)
expire(id, delay, tonumber(ARGV[4]))
return 1
"""
)

# ARGV: P, stream id, session id, after seq, retention ms, margin ms.
# false if unknown, another session's, expired or not readable; else {ended, last seq, seq, json, seq, json...}.
_READ = (
    _HEAD
    + """
local id, after = ARGV[2], tonumber(ARGV[4])
local key, meta = P .. 's:' .. id, P .. 'm:' .. id
local score = redis.call('ZSCORE', LIVE, id) or redis.call('ZSCORE', ENDED, id)
if not score then return false end
if tonumber(score) <= now then drop(id) return false end
local fields = redis.call('HMGET', meta, 'session', 'last', 'dropped', 'ended')
if fields[1] ~= ARGV[3] then return false end
local last, dropped, ended = tonumber(fields[2]), tonumber(fields[3]), fields[4] == '1'
if after < 1 or after < dropped or after > last then return false end
local out = {ended and 1 or 0, last}
for _, entry in ipairs(redis.call('XRANGE', key, '0-' .. (after + 1), '+')) do
  local f = entry[2]
  if f[1] == 'm' then
    table.insert(out, string.sub(entry[1], 3))
    table.insert(out, f[2])
  end
end
if ended then
  local ms = tonumber(ARGV[5])
  redis.call('ZADD', ENDED, 'LT', now + ms, id)
  if tonumber(score) > now + ms then expire(id, ms, tonumber(ARGV[6])) end
end
return out
"""
)

# ARGV: P, session id. Streams forgotten.
_FORGET = (
    _HEAD
    + """
local index = P .. 'x:' .. ARGV[2]
local ids = redis.call('SMEMBERS', index)
for _, id in ipairs(ids) do drop(id) end
redis.call('DEL', index)
return #ids
"""
)


def _ms(seconds: float) -> int:
    # At least 1: PEXPIRE 0 would delete the key at once.
    return max(1, round(seconds * 1000))


class RedisEventStore(RedisScripted):
    """Events of resumable streams in Redis, shared by every worker with the same Redis and prefix.

    Same limits and meaning as `InMemoryEventStore`, plus `live_retention` (a stream
    with no new event for that long is forgotten, for a worker that died mid-reply).
    Bound to the worker's one connection pool by `RedisBackend.start()` (or `bind`).
    `block_slice` (default: 0.5 s, or half the timeout if shorter) bounds one XREAD BLOCK;
    `max_blocking` bounds how many pooled connections live tails hold at once.
    """

    what = _WHAT
    sources = {"open": _OPEN, "append": _APPEND, "end": _END, "read": _READ, "forget": _FORGET}

    def __init__(
        self,
        client: Redis | None = None,
        *,
        prefix: str = "mcp-asgi:",
        max_events_per_stream: int = 1000,
        retention: float = 60.0,
        undelivered_retention: float = 600.0,
        max_streams: int = 10_000,
        max_bytes_per_stream: int = 1024 * 1024,
        max_total_bytes: int = 64 * 1024 * 1024,
        live_retention: float = 3600.0,
        timeout: float = 2.0,
        block_slice: float | None = None,
        max_blocking: int = 8,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError("`prefix` must be a string")
        check_event_limits(
            max_events_per_stream=max_events_per_stream,
            retention=retention,
            undelivered_retention=undelivered_retention,
            max_streams=max_streams,
            max_bytes_per_stream=max_bytes_per_stream,
            max_total_bytes=max_total_bytes,
        )
        if not live_retention > 0 or not timeout > 0:
            raise ValueError("`live_retention` and `timeout` must be positive numbers of seconds")
        if block_slice is None:
            block_slice = min(0.5, timeout / 2)
        if not 0 < block_slice < timeout:
            raise ValueError("`block_slice` must be positive and shorter than `timeout` (it blocks within one call)")
        if max_blocking < 0:
            raise ValueError("`max_blocking` must be >= 0")
        self.prefix = prefix + "events:"
        self.max_events_per_stream = max_events_per_stream
        self.retention = retention
        self.undelivered_retention = undelivered_retention
        self.max_streams = max_streams
        self.max_bytes_per_stream = max_bytes_per_stream
        self.max_total_bytes = max_total_bytes
        self.live_retention = live_retention
        self.timeout = timeout
        self.block_slice = block_slice
        self._blocking = anyio.Semaphore(max_blocking) if max_blocking else None
        # Key TTLs outlast the scripts' own deadlines, so a script always finds a stream's size to subtract.
        self._margin_ms = _ms(60.0)
        self._index_ms = _ms(max(live_retention, undelivered_retention) + 60.0)
        self._unbound()
        if client is not None:
            self.bind(client)

    async def _run(self, name: str, args: list[Any]) -> Any:
        return await self._guarded(name, lambda client: self._scripts[name](keys=[], args=[self.prefix, *args]))

    async def open_stream(self, session_id: str) -> str | None:
        stream_id = secrets.token_hex(8)
        args = [stream_id, session_id, self.max_streams, _ms(self.live_retention), self._margin_ms, self._index_ms]
        return stream_id if await self._run("open", args) else None

    async def append(self, stream_id: str, message: dict[str, Any] | None) -> str | None:
        payload = "" if message is None else encode(message).decode("utf-8")
        size = len(payload.encode("utf-8"))
        args = [
            stream_id,
            payload,
            size,
            self.max_events_per_stream,
            self.max_bytes_per_stream,
            self.max_total_bytes,
            _ms(self.live_retention),
            self._margin_ms,
        ]
        seq = int(await self._run("append", args))
        return f"{stream_id}:{seq}" if seq else None

    async def end_stream(self, stream_id: str, *, delivered: bool) -> None:
        delay = self.retention if delivered else self.undelivered_retention
        await self._run("end", [stream_id, _ms(delay), self._margin_ms])

    async def read(self, session_id: str, last_event_id: str, timeout: float) -> Replay | None:
        stream_id, _, seq_text = last_event_id.rpartition(":")
        if not stream_id or not _is_seq(seq_text):
            return None
        after = int(seq_text)
        with anyio.move_on_after(max(0.0, timeout)) as waiting:
            while True:
                found = await self._run("read", [stream_id, session_id, after, _ms(self.retention), self._margin_ms])
                if not found:
                    return None
                replay = self._replay(stream_id, found)
                if replay.events or replay.ended or timeout <= 0:
                    return replay
                await self._wait(stream_id, int(found[1]))
        if waiting.cancelled_caught:
            # Nothing new within `timeout`: one last look, so a forgotten stream still reads as None.
            found = await self._run("read", [stream_id, session_id, after, _ms(self.retention), self._margin_ms])
            return self._replay(stream_id, found) if found else None
        return None  # pragma: no cover - the loop returns

    @staticmethod
    def _replay(stream_id: str, found: list[Any]) -> Replay:
        events = []
        for i in range(2, len(found), 2):
            text = found[i + 1]
            events.append(StoredEvent(f"{stream_id}:{found[i]}", json.loads(text) if text else None))
        return Replay(events, bool(int(found[0])))

    async def _wait(self, stream_id: str, last: int) -> None:
        """Until an entry after seq `last` may exist: one XREAD BLOCK slice, or a poll interval."""
        key = self.prefix + "s:" + stream_id
        block_ms = _ms(self.block_slice)
        if self._blocking is None or self._blocking.value == 0:
            await anyio.sleep(self.block_slice)
            return
        async with self._blocking:
            await self._guarded("xread", lambda client: client.xread({key: f"0-{last}"}, count=1, block=block_ms))

    async def forget_session(self, session_id: str) -> None:
        await self._run("forget", [session_id])
