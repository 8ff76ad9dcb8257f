"""Redis as the shared backend of several workers: `RedisBackend` and its `RedisSessionStore`.

Needs the extra `mcp-asgi[redis]` (redis-py's asyncio client), imported only when a
backend starts or a store is bound, so `import mcp_asgi` never imports redis.

A session is a hash `prefix + "session:" + sid` (each field JSON-encoded) and its
subscriptions a set beside it (`...:subscriptions`). Both carry a TTL of
`idle_timeout`, refreshed by every read that counts as activity, so Redis drops idle
sessions by itself: no sweeper. The session cap counts a sorted set
`prefix + "sessions"` (member: session id, score: when it expires, in Redis's own
clock): creating a session first removes the entries whose time has passed (cost:
only those entries) and then counts with ZCARD, O(1). A counter would drift, since
nothing decrements it when Redis expires a key. Every change is one Lua script,
atomic in Redis, so two workers changing one session never overwrite each other.

Every call has a timeout; an unreachable (or hung) Redis raises
`MCPError(-32000, "Service unavailable: ...", http_status=503)` within it, never a hang.
The scripts touch keys of one session plus the index, so Redis Cluster is not supported.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcp_asgi.backend import new_worker_id
from mcp_asgi.bus import Bus, backend_unavailable
from mcp_asgi.redis_events import RedisEventStore
from mcp_asgi.redis_scripted import RedisScripted, import_redis
from mcp_asgi.redis_wire import RedisWire, ReplyError, WireScript
from mcp_asgi.tasks.redis_store import RedisTaskStore
from mcp_asgi.transports.events import EventStore
from mcp_asgi.transports.sessions import (
    ANYONE,
    SessionRecord,
    check_subscription_uri,
    check_update_fields,
    session_limit_reached,
    too_many_subscriptions,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("mcp_asgi")

_WHAT = "session store (Redis)"
_SCHEMES = ("redis", "rediss", "unix")

# Redis's clock in milliseconds, so every worker agrees on when an index entry expires.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

# KEYS: hash, index. ARGV: ttl ms (0: none), max sessions, session id, field, value, ...
# 1 created, 0 the store is full, -1 the id exists.
_CREATE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
else
  redis.call('ZADD', KEYS[2], '+inf', ARGV[3])
end
return 1
"""
)

# KEYS: hash, subscriptions, index. ARGV: ttl ms, check principal ('1'/'0'), principal JSON, session id.
# {fields, subscriptions}, or false if missing or another principal's (then untouched). Lua compares
# interned strings by identity, so the comparison's time does not depend on where they differ.
_GET = f"""
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return false end
if ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'principal') ~= ARGV[3] then return false end
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  {_NOW}
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('ZADD', KEYS[3], 'XX', now + ttl, ARGV[4])
end
return {{fields, redis.call('SMEMBERS', KEYS[2])}}
"""
_GET_WIRE = WireScript(_GET, keys=3)

# KEYS: hash. ARGV: field, value, ... Never creates a hash (it would have no TTL).
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# KEYS: hash, subscriptions. ARGV: uri, max. 1 added, 0 already there, -1 full, -2 no session.
_SUBSCRIBE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[2], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""

# KEYS: hash, subscriptions. ARGV: uri.
_SUBSCRIBED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('SISMEMBER', KEYS[2], ARGV[1])
"""

# KEYS: hash, subscriptions, index. ARGV: session id. 1 if the session existed.
_DELETE = """
local existed = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return existed
"""


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _pairs(fields: dict[str, Any]) -> list[str]:
    return [item for name, value in fields.items() for item in (name, _encode(value))]


class RedisSessionStore(RedisScripted):
    """Session records in Redis, shared by every worker that uses the same server and prefix.

    Bound to a client by `RedisBackend.start()` (or `bind(client)`); the client is the
    worker's one connection pool, never one connection per session. The read every request
    makes (`get`) goes through one more connection, the store's own `RedisWire`, opened on
    first use with the pool's settings: redis-py's per-command machinery cost more CPU than
    the round trip. A pool the wire cannot mirror leaves every call on redis-py.
    """

    what = _WHAT
    sources = {
        "create": _CREATE,
        "get": _GET,
        "update": _UPDATE,
        "subscribe": _SUBSCRIBE,
        "subscribed": _SUBSCRIBED,
        "delete": _DELETE,
    }

    def __init__(
        self,
        client: Redis | None = None,
        *,
        prefix: str = "mcp-asgi:",
        idle_timeout: float | None = 3600.0,
        max_sessions: int = 100_000,
        timeout: float = 2.0,
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError("`prefix` must be a string")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("`idle_timeout` must be a positive number of seconds, or None for no expiry")
        if max_sessions < 1:
            raise ValueError("`max_sessions` must be at least 1")
        if not timeout > 0:
            raise ValueError("`timeout` must be a positive number of seconds")
        self.prefix = prefix
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self.timeout = timeout
        # Milliseconds, at least 1: PEXPIRE 0 would delete the key.
        self._ttl_ms = max(1, round(idle_timeout * 1000)) if idle_timeout is not None else 0
        self._ttl_arg = str(self._ttl_ms)
        self._index = prefix + "sessions"
        self._wire: RedisWire | None = None
        self._unbound()
        if client is not None:
            self.bind(client)

    def bind(self, client: Redis | None) -> None:
        super().bind(client)
        wire, self._wire = self._wire, (RedisWire.for_client(client, self.timeout) if client is not None else None)
        if wire is not None:
            wire.close()

    def _keys(self, session_id: str) -> tuple[str, str]:
        key = self.prefix + "session:" + session_id
        return key, key + ":subscriptions"

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._guarded(name, lambda client: self._scripts[name](keys=keys, args=args, client=client))

    async def create(self, record: SessionRecord) -> None:
        key, _ = self._keys(record.session_id)
        fields = {
            "principal": record.principal,
            "protocol_version": record.protocol_version,
            "client_capabilities": record.client_capabilities,
            "client_info": record.client_info,
            "log_level": record.log_level,
            "initialized": record.initialized,
            "created_at": time.time(),
        }
        args = [self._ttl_ms, self.max_sessions, record.session_id, *_pairs(fields)]
        created = await self._run("create", [key, self._index], args)
        if created == 0:
            raise session_limit_reached(self.max_sessions)
        if created == -1:
            raise ValueError(f"session {record.session_id!r} already exists")
        # Subscriptions a new record already holds (none, from the transports) go in one by one.
        for uri in record.subscriptions:
            await self.subscribe(record.session_id, uri)

    async def get(self, session_id: str, *, principal: Any = ANYONE) -> SessionRecord | None:
        key, subscriptions = self._keys(session_id)
        check = "0" if principal is ANYONE else "1"
        expected = "" if principal is ANYONE else _encode(principal)
        args = [key, subscriptions, self._index, self._ttl_arg, check, expected, session_id]
        found = await self._wire_get(args) if self._wire is not None else await self._run("get", args[:3], args[3:])
        if not found:
            return None
        flat, members = found
        # Each value is JSON text: decoded as one array, one json.loads per request instead of one per field.
        values = json.loads("[" + ",".join(flat[1::2]) + "]")
        fields = dict(zip(flat[0::2], values, strict=True))
        now = time.monotonic()
        created_at = now - max(0.0, time.time() - float(fields.get("created_at") or time.time()))
        return SessionRecord(
            session_id=session_id,
            protocol_version=fields.get("protocol_version"),
            client_capabilities=fields.get("client_capabilities") or {},
            client_info=fields.get("client_info"),
            log_level=fields.get("log_level"),
            subscriptions=set(members),
            initialized=bool(fields.get("initialized")),
            created_at=created_at,
            last_active=now,
            principal=fields.get("principal"),
        )

    async def _wire_get(self, args: list[str]) -> Any:
        """The read on the store's own connection, which bounds it by `timeout` itself; failures are the 503."""
        try:
            return await self._wire.script(_GET_WIRE, args)  # type: ignore[union-attr]
        except TimeoutError:
            raise backend_unavailable(self.what, f"no answer within {self.timeout:g} s") from None
        except (OSError, ReplyError) as error:
            if isinstance(error, ReplyError):  # Redis answered, and refused: a bug to look at
                logger.warning("Redis %s call get failed: %r", self.what, error)
            raise backend_unavailable(self.what, type(error).__name__) from error

    async def update(self, session_id: str, **fields: Any) -> bool:
        check_update_fields(fields)
        if not fields:
            return await self.get(session_id) is not None
        key, _ = self._keys(session_id)
        return bool(await self._run("update", [key], _pairs(fields)))

    async def subscribe(self, session_id: str, uri: str) -> bool:
        check_subscription_uri(uri)
        added = await self._run("subscribe", list(self._keys(session_id)), [uri, SessionRecord.max_subscriptions])
        if added == -1:
            raise too_many_subscriptions()
        return added == 1

    async def unsubscribe(self, session_id: str, uri: str) -> bool:
        _, subscriptions = self._keys(session_id)
        return bool(await self._guarded("unsubscribe", lambda client: client.srem(subscriptions, uri)))

    async def subscribed(self, session_id: str, uri: str) -> bool:
        return bool(await self._run("subscribed", list(self._keys(session_id)), [uri]))

    async def delete(self, session_id: str) -> bool:
        key, subscriptions = self._keys(session_id)
        return bool(await self._run("delete", [key, subscriptions, self._index], [session_id]))

    async def alive(self, session_id: str) -> bool:
        # EXISTS leaves the key's TTL alone: asking is not activity.
        key, _ = self._keys(session_id)
        return bool(await self._guarded("alive", lambda client: client.exists(key)))


# A claim changes only while its holder's token is in it: compare and act, atomically.
_REFRESH = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RedisBackend:
    """Sessions, events and the bus of several workers (processes, hosts) shared through one Redis.

    Each worker opens ONE connection pool in `start()` (the server's lifespan, or the lazy
    start) and closes it in `close()`; every stream and request of the worker shares it.
    `bus` defaults to `mcp_asgi.redis_bus.RedisBus` on the same pool; pass another `Bus`
    to replace it. `events` defaults to `mcp_asgi.redis_events.RedisEventStore` on the same
    pool, so a 2025-11-25 stream cut on one worker resumes on any other.
    """

    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "mcp-asgi:",
        idle_timeout: float | None = 3600.0,
        max_sessions: int = 100_000,
        timeout: float = 2.0,
        max_connections: int = 50,
        events: EventStore | None = None,
        bus: Bus | None = None,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
            raise ValueError(f"`url` must be a redis://, rediss:// or unix:// URL; got {url!r}")
        if max_connections < 2:
            raise ValueError("`max_connections` must be at least 2 (the bus holds one connection)")
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.max_connections = max_connections
        self.worker_id = new_worker_id()
        self.sessions = RedisSessionStore(
            prefix=prefix, idle_timeout=idle_timeout, max_sessions=max_sessions, timeout=timeout
        )
        self.events: EventStore = (
            events
            if events is not None
            else RedisEventStore(prefix=prefix, timeout=timeout, max_blocking=max(1, max_connections // 4))
        )
        self._given_bus = bus
        self._bus: Bus | None = bus
        self._client: Redis | None = None
        # Tasks of the tasks extension, on the same pool once started.
        self.tasks = RedisTaskStore(prefix=prefix, timeout=timeout)

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError("RedisBackend.bus exists once start() has run (it shares the worker's connection pool)")
        return self._bus

    async def start(self) -> None:
        if self._client is not None:
            return
        redis = import_redis()
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.timeout,  # waiting for a free connection
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            decode_responses=True,
            # A pooled connection Redis dropped (a restart) is replaced once, at once: the first request
            # after Redis is back succeeds; the call's own timeout bounds the whole.
            retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1, (redis.exceptions.ConnectionError,)),
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        self._client = client
        self.sessions.bind(client)
        self.tasks.bind(client)
        if isinstance(self.events, RedisEventStore):
            self.events.bind(client)
        if self._given_bus is None:
            from mcp_asgi.redis_bus import RedisBus

            self._bus = RedisBus(client, prefix=self.prefix, timeout=self.timeout)
        await self.bus.start()

    async def claim(self, key: str, token: str, ttl: float) -> bool:
        ms = max(1, round(ttl * 1000))
        return bool(
            await self.sessions._guarded("claim", lambda c: c.set(self.prefix + "claim:" + key, token, nx=True, px=ms))
        )

    async def refresh(self, key: str, token: str, ttl: float) -> bool:
        ms = max(1, round(ttl * 1000))
        name = self.prefix + "claim:" + key
        return bool(await self.sessions._guarded("refresh", lambda c: c.eval(_REFRESH, 1, name, token, ms)))

    async def release(self, key: str, token: str) -> None:
        name = self.prefix + "claim:" + key
        await self.sessions._guarded("release", lambda c: c.eval(_RELEASE, 1, name, token))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await self.bus.close()
        finally:
            if self._given_bus is None:
                self._bus = None
            self.sessions.bind(None)
            self.tasks.bind(None)
            if isinstance(self.events, RedisEventStore):
                self.events.bind(None)
            await client.aclose()
            await client.connection_pool.disconnect()
