"""The hot session read's own Redis connection: one pipelined socket speaking RESP2, no redis-py per call.

Every request of a 2025 session reads its session record: one EVALSHA. Through redis-py that
read costs several times the round trip in CPU (the pool's condition and timeout, the retry
wrapper, packing ten arguments, `Script.__call__`), and a worker is CPU-bound on it. `RedisWire`
keeps one connection of its own per worker and sends each command as bytes packed mostly in
advance (`WireScript`); the replies come back in order and an `asyncio.Protocol` hands each to
the oldest waiter, so any number of concurrent requests share the socket without a lock.
For the same reason the oldest command waiting is the first to be late: one timer per
connection watches it (instead of a timer per call), and when it is late Redis is not answering,
every waiter fails with TimeoutError and the connection is dropped, as redis-py's socket timeout
would drop one.

Only what the session read needs: connect (TCP, TLS or a unix socket, AUTH, SELECT, CLIENT
SETNAME) from the settings of the backend's redis-py pool, one command, one RESP2 reply. A pool
set up in a way this module does not mirror (a credential provider, a connection class of
another library) gets no wire, and the store stays on redis-py (`RedisWire.for_client` is None).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import sys
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any


async def _bounded(awaitable: Awaitable[Any], seconds: float) -> Any:
    """`awaitable` awaited for at most `seconds` (TimeoutError); for the rare paths: connecting, retrying."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(max(0.0, seconds)):
            return await awaitable
    try:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(awaitable, max(0.0, seconds))
    except asyncio.TimeoutError as late:  # pragma: no cover - not the builtin TimeoutError before 3.11
        raise TimeoutError from late


class ReplyError(Exception):
    """An error reply of Redis (`-ERR ...`, `-NOSCRIPT ...`): Redis answered, and refused."""


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


def parse(buffer: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """The RESP2 reply starting at `pos` and where it ends; `_Incomplete` if it is not all there.

    Bulk strings are decoded as UTF-8 (the stores use decode_responses); an error reply is a
    `ReplyError` value, not raised, so that one refusal never disturbs the replies behind it.
    """
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind = buffer[pos]
    line = buffer[pos + 1 : end]
    pos = end + 2
    if kind == 36:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, pos
        if len(buffer) < pos + size + 2:
            raise _Incomplete
        return buffer[pos : pos + size].decode(), pos + size + 2
    if kind == 42:  # * array
        count = int(line)
        if count < 0:
            return None, pos
        items: list[Any] = []
        for _ in range(count):
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                raise _Incomplete
            if buffer[pos] != 36:
                item, pos = parse(buffer, pos)
                items.append(item)
                continue
            # A bulk string, the usual element, read here: one call per array, not one per element.
            size = int(buffer[pos + 1 : end])
            pos = end + 2
            if size < 0:
                items.append(None)
                continue
            if len(buffer) < pos + size + 2:
                raise _Incomplete
            items.append(buffer[pos : pos + size].decode())
            pos += size + 2
        return items, pos
    if kind == 58:  # : integer
        return int(line), pos
    if kind == 43:  # + simple string
        return line.decode(), pos
    if kind == 45:  # - error
        return ReplyError(line.decode(errors="replace")), pos
    raise ValueError(f"not a RESP2 reply: {bytes(buffer[pos - len(line) - 3 : pos])!r}")


class WireScript:
    """A Lua script's EVALSHA with its fixed head packed once; EVAL of the source when Redis lost it."""

    def __init__(self, source: str, keys: int) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # Redis's name for it
        self._keys = b"%d" % keys
        self._heads: dict[int, tuple[bytes, bytes]] = {}

    def _head(self, count: int) -> tuple[bytes, bytes]:
        head = self._heads.get(count)
        if head is None:
            size = b"*%d\r\n" % (count + 3)
            head = (
                size + _bulk(b"EVALSHA") + _bulk(self.sha.encode()) + _bulk(self._keys),
                size + _bulk(b"EVAL") + _bulk(self.source.encode()) + _bulk(self._keys),
            )
            self._heads[count] = head
        return head

    def packed(self, args: list[str], *, by_source: bool = False) -> bytes:
        """The command for these keys-then-arguments, all strings; EVAL instead of EVALSHA if `by_source`."""
        parts = [self._head(len(args))[by_source]]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)


@dataclass(frozen=True)
class WireSettings:
    """Where and how to connect, as the backend's redis-py pool would."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: ssl.SSLContext | None = None
    server_hostname: str | None = None
    client_name: str | None = None

    def handshake(self) -> list[bytes]:
        """The commands a new connection sends before any other."""
        commands = []
        if self.password is not None:
            auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
            commands.append(pack(*auth))
        if self.db:
            commands.append(pack("SELECT", self.db))
        if self.client_name:
            commands.append(pack("CLIENT", "SETNAME", self.client_name))
        return commands


def settings_of(client: Any) -> WireSettings | None:
    """The settings of a redis-py asyncio client's pool, or None where this module cannot mirror them."""
    try:
        from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

        pool = client.connection_pool
        kind, kwargs = pool.connection_class, dict(pool.connection_kwargs)
    except (ImportError, AttributeError):
        return None
    if kind not in (Connection, SSLConnection, UnixDomainSocketConnection):
        return None
    # The rest of redis-py's settings change nothing on our connection: timeouts (the store's own
    # bounds each call), retries (ours: one reconnect), decoding (always UTF-8 text, as the stores ask).
    utf8 = str(kwargs.get("encoding", "utf-8")).lower().replace("-", "") == "utf8"
    if kwargs.get("credential_provider") is not None or not utf8:
        return None
    context = None
    if kind is SSLConnection:
        try:
            context = kind(**kwargs).ssl_context.get()
        except (AttributeError, TypeError, ValueError, OSError):
            return None
    elif any(name.startswith("ssl_") for name in kwargs):
        return None
    path = kwargs.get("path") if kind is UnixDomainSocketConnection else None
    host = str(kwargs.get("host") or "localhost")
    return WireSettings(
        host=host,
        port=int(kwargs.get("port") or 6379),
        path=path,
        db=int(kwargs.get("db") or 0),
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        ssl=context,
        server_hostname=host if context is not None else None,
        client_name=kwargs.get("client_name"),
    )


class _Replies(asyncio.Protocol):
    """One connection: commands written in order, each reply handed to the oldest waiter."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.lost = False
        # Each waiter with the time its reply is due; replies come in order, so the first is the earliest.
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._buffer = bytearray()
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        try:
            while pos < len(buffer):
                reply, pos = parse(buffer, pos)
                waiter = self._waiters.popleft()[0]
                if not waiter.done():  # a waiter that was cancelled is gone; its reply is not anyone else's
                    waiter.set_result(reply)
        except _Incomplete:
            pass
        except (ValueError, IndexError):  # bytes that are not RESP2, or a reply nobody asked for
            self.abort()
            return
        del buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionResetError("Redis closed the connection"))

    def _fail(self, error: Exception) -> None:
        self.lost = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiters, self._waiters = self._waiters, deque()
        for waiter, _ in waiters:
            if not waiter.done():
                waiter.set_exception(error)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.lost or self.transport is None:
            raise ConnectionResetError("Redis closed the connection")
        waiter = self.loop.create_future()
        due = self.loop.time() + self.timeout
        self._waiters.append((waiter, due))
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(due, self._watch)
        self.transport.write(command)
        return waiter

    def _watch(self) -> None:
        """The oldest command's reply is due: late means Redis is not answering; else watch the next."""
        self._watchdog = None
        if not self._waiters:
            return
        due = self._waiters[0][1]
        if self.loop.time() + 0.001 < due:  # timers may fire a clock tick early
            self._watchdog = self.loop.call_at(due, self._watch)
            return
        if self.transport is not None:
            self.transport.abort()
        self._fail(TimeoutError(f"Redis did not answer within {self.timeout:g} s"))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.connection_lost(None)


class RedisWire:
    """One worker's own pipelined connection to Redis, opened on first use and again after it breaks.

    Every call answers, or fails, within `timeout`: a `TimeoutError` when Redis did not answer,
    another `OSError` (`ConnectionError`s) when it could not be reached, a `ReplyError` when it
    refused.
    """

    def __init__(self, settings: WireSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self._connection: _Replies | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_client(cls, client: Any, timeout: float) -> RedisWire | None:
        """A wire to the server of a redis-py asyncio client, or None (then use the client)."""
        settings = settings_of(client)
        return None if settings is None else cls(settings, timeout)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Replies:
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            current = self._connection
            if current is not None and not current.lost and current.loop is loop:
                return current  # another request connected while this one waited
            self.drop()
            settings = self.settings
            if settings.path is not None:
                _, connection = await loop.create_unix_connection(lambda: _Replies(loop, self.timeout), settings.path)
            else:
                _, connection = await loop.create_connection(
                    lambda: _Replies(loop, self.timeout),
                    settings.host,
                    settings.port,
                    ssl=settings.ssl,
                    server_hostname=settings.server_hostname,
                )
            try:
                for waiter in [connection.send(command) for command in settings.handshake()]:
                    reply = await waiter
                    if isinstance(reply, ReplyError):
                        raise ConnectionRefusedError(f"Redis refused the connection: {reply}")
            except BaseException:
                connection.abort()
                raise
            self._connection = connection
            return connection

    async def call(self, command: bytes) -> Any:
        """Send one packed command of an idempotent kind and return its reply; sent once more, on a new
        connection, when the one it went on broke (Redis restarted, CLIENT KILL) in the time left."""
        loop = asyncio.get_running_loop()
        connection = self._connection
        if connection is not None and not connection.lost and connection.loop is loop:
            started = loop.time()
            try:
                return await connection.send(command)  # the connection's own timer bounds the wait
            except ConnectionResetError:
                pass
            left = self.timeout - (loop.time() - started)
        else:
            left = self.timeout
        return await _bounded(self._reconnected(loop, command), left)

    async def _reconnected(self, loop: asyncio.AbstractEventLoop, command: bytes) -> Any:
        return await (await self._connect(loop)).send(command)

    async def script(self, script: WireScript, args: list[str]) -> Any:
        """Run an idempotent script by its SHA, by its source if Redis lost it; an error reply raises."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        reply = await self.call(script.packed(args))
        if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
            # EVAL runs it and caches it again, within what is left of the time.
            left = self.timeout - (loop.time() - started)
            reply = await _bounded(self.call(script.packed(args, by_source=True)), left)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def drop(self) -> None:
        """Close the connection (a later call opens another); its waiters fail with ConnectionResetError."""
        connection, self._connection = self._connection, None
        if connection is not None and not connection.lost:
            try:
                connection.abort()
            except RuntimeError:  # its event loop is closed: the socket went with it
                pass

    close = drop
