"""The message bus of workers that share one Redis server: Redis pub/sub behind the `Bus` protocol.

Each worker holds ONE pub/sub connection and runs ONE reader task on it; the reader
fans every message out to the worker's local subscriptions of its channel (bounded
queues, `mcp_asgi.bus.LocalFanout`), so a thousand open streams cost one connection.
The worker SUBSCRIBEs to a channel when its first local subscriber appears and
UNSUBSCRIBEs when the last one leaves. `subscribe()` is synchronous (the protocol's
shape); `await bus.ready(channel)` returns once Redis has confirmed the subscription,
and from then on everything published on the channel reaches the subscriber.
`listen()` does both.

Faults. Every call to Redis has a timeout. While Redis is unreachable (or hangs),
`publish` and `ready` raise `backend_unavailable(...)`, an `MCPError` with HTTP status
503, within `timeout` seconds; local subscriptions stay open, and the reader reconnects
with a jittered exponential backoff and re-subscribes every channel that still has a
local subscriber, by itself. Redis pub/sub delivers at most once: a message published
while a worker was disconnected from Redis is lost for that worker, so what rides on
the bus must tolerate loss (streams resume from the event store, pending requests
time out). Closing the bus ends every local subscription.

Why a bare asyncio task: redis-py's client runs only on asyncio, and the reader lives
from `start()` to `close()`, which are two calls rather than one `async with`, while
anyio starts tasks only inside a task group that must end in the block that opened it.
Timeouts use anyio's cancel scopes, which work in any asyncio task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import TYPE_CHECKING, Any

import anyio

from mcp_asgi.bus import LocalFanout, LocalSubscription, backend_unavailable
from mcp_asgi.protocol.jsonrpc import encode
from mcp_asgi.redis_scripted import import_redis

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

logger = logging.getLogger("mcp_asgi")

_WHAT = "message bus (Redis)"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _CountingFanout(LocalFanout):
    """`LocalFanout` that also counts the messages a full (hence dropped) subscriber did not take."""

    def __init__(self, on_first: Any, on_last: Any) -> None:
        super().__init__(on_first, on_last)
        self.dropped = 0

    def deliver(self, channel: str, message: dict[str, Any]) -> int:
        subscribers = len(self._channels.get(channel, ()))
        taken = super().deliver(channel, message)
        self.dropped += subscribers - taken
        return taken


class RedisBus:
    """Cross-worker messages over Redis pub/sub: one connection and one reader task per worker.

    Delivery is at most once: what is published while this worker is cut off from Redis
    (or before `ready(channel)` returned) does not reach it, and is not replayed later.
    """

    def __init__(
        self,
        client_or_url: Redis | str,
        *,
        prefix: str = "mcp-asgi:",
        timeout: float = 1.0,
        health_interval: float = 5.0,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        if not isinstance(prefix, str):
            raise TypeError("`prefix` must be a string")
        if not timeout > 0:
            raise ValueError("`timeout` must be a positive number of seconds")
        if not health_interval > 0:
            raise ValueError("`health_interval` must be a positive number of seconds")
        if not (len(backoff) == 2 and 0 < backoff[0] <= backoff[1]):
            raise ValueError("`backoff` must be (first, longest) delays in seconds with 0 < first <= longest")
        redis = import_redis()
        if isinstance(client_or_url, str):
            # One immediate retry replaces a connection Redis dropped (a restart); more would only
            # spend the call's timeout on a server that is down, so an outage is a prompt 503.
            retry = redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 1, (redis.exceptions.ConnectionError,))
            self._client: Redis = redis.asyncio.Redis.from_url(
                client_or_url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=retry
            )
            self._owns_client = True
        else:
            self._client = client_or_url
            self._owns_client = False
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self._refusals: tuple[type[BaseException], ...] = (redis.exceptions.ResponseError,)
        # Our own deadline, or redis-py's socket timeout when it fires first: both mean no answer.
        self._timeouts = (TimeoutError, asyncio.TimeoutError, redis.exceptions.TimeoutError)
        self.prefix = prefix
        self.timeout = timeout
        self.health_interval = health_interval
        self._backoff = backoff
        self._fanout = _CountingFanout(self._interest_changed, self._interest_changed)
        # Redis channel names this connection is subscribed to, as of the last command sent.
        self._sent: set[str] = set()
        # Subscribe/unsubscribe replies still to come, per channel name: the state is known
        # only once the reply to the last command has arrived.
        self._awaiting: dict[str, int] = {}
        # Channels Redis confirmed and no UNSUBSCRIBE has been sent for since: `ready()` waits on this.
        self._confirmed: set[str] = set()
        self._wake = asyncio.Event()  # the set of wanted channels changed
        self._state = asyncio.Event()  # `_confirmed` or the connection changed; replaced on each change
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connected = False
        # Counters for operators and tests.
        self.received = 0
        self.malformed = 0
        self.connections = 0  # successful connections so far; more than one means it reconnected

    @property
    def dropped(self) -> int:
        """Messages a local subscriber lost because its queue was full (it is then dropped)."""
        return self._fanout.dropped

    def subscribe(self, channel: str, *, buffer: int = 256) -> LocalSubscription:
        """A local subscription to `channel`; await `ready(channel)` before relying on delivery."""
        if self._closed:
            raise backend_unavailable(_WHAT, "the bus was closed")
        if not isinstance(channel, str) or not channel:
            raise ValueError("`channel` must be a non-empty string")
        return self._fanout.add(channel, buffer)

    async def listen(self, channel: str, *, buffer: int = 256, timeout: float | None = None) -> LocalSubscription:
        """A local subscription to `channel` that Redis has confirmed (see `ready`)."""
        subscription = self.subscribe(channel, buffer=buffer)
        try:
            await self.ready(channel, timeout=timeout)
        except BaseException:
            subscription.close()
            raise
        return subscription

    async def ready(self, channel: str, *, timeout: float | None = None) -> None:
        """Wait until Redis confirms this worker's subscription to `channel` (which needs a local subscriber).

        Raises the 503 `MCPError` when Redis does not confirm within `timeout` (default:
        the bus's), for instance while it is unreachable.
        """
        if self._task is None and not self._closed:
            raise RuntimeError("RedisBus.ready() before RedisBus.start(): nothing reads from Redis yet")
        name = self.prefix + channel
        limit = self.timeout if timeout is None else timeout
        with anyio.move_on_after(limit):
            while name not in self._confirmed:
                if self._closed:
                    raise backend_unavailable(_WHAT, "the bus was closed")
                if channel not in self._fanout.channels():
                    raise ValueError(f"no local subscription to {channel!r} to wait for")
                await self._state.wait()
            return
        raise backend_unavailable(_WHAT, f"subscribing to {channel!r} was not confirmed within {limit:g} s")

    async def publish(self, channel: str, message: dict[str, Any]) -> int:
        """Send `message` to every worker subscribed to `channel`; how many workers it reached (PUBLISH's count).

        Raises the 503 `MCPError` within `timeout` seconds when Redis is unreachable or
        does not answer; nothing is queued for later.
        """
        if self._closed:
            raise backend_unavailable(_WHAT, "the bus was closed")
        payload = encode(message)
        try:
            with anyio.fail_after(self.timeout):
                return int(await self._client.publish(self.prefix + channel, payload))
        except self._timeouts:
            # Before `self._errors`: TimeoutError is an OSError, redis-py's a RedisError.
            raise backend_unavailable(_WHAT, f"no answer within {self.timeout:g} s") from None
        except self._errors as exc:
            # Redis answering with an error (NOAUTH, READONLY...) is a set-up problem to show the operator.
            level = logging.WARNING if isinstance(exc, self._refusals) else logging.DEBUG
            logger.log(level, "Publishing on the Redis message bus failed: %r", exc)
            # Only the error's type reaches the client: its text names the Redis host.
            raise backend_unavailable(_WHAT, type(exc).__name__) from exc

    async def start(self) -> None:
        """Start the reader task; returns at once and never fails on Redis being down (the reader retries)."""
        if self._closed:
            raise RuntimeError("This RedisBus was closed; create a new one")
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mcp-asgi redis bus reader")

    async def close(self) -> None:
        """End every local subscription, stop the reader and release its connection (and an owned client)."""
        if self._closed:
            return
        self._closed = True
        self._fanout.end_all()
        self._notify()  # `ready()` waiters see the bus closed
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # The reader's own clean-up is bounded by `timeout`; this bound only guards against a bug.
            await asyncio.wait({task}, timeout=self.timeout + 1)
        if self._owns_client:
            with anyio.move_on_after(self.timeout, shield=True), contextlib.suppress(*self._errors):
                await self._client.aclose()

    def _interest_changed(self, channel: str) -> None:
        # LocalFanout calls this synchronously (closing a subscription never awaits); the reader acts on it.
        self._wake.set()

    def _notify(self) -> None:
        self._state.set()
        self._state = asyncio.Event()

    async def _run(self) -> None:
        """The reader: connect, subscribe, read and fan out; on any failure, back off and start over."""
        delay = self._backoff[0]
        failures = 0
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._serve(pubsub)
            except Exception as exc:
                if self.connected or failures == 0:
                    level = logging.WARNING if isinstance(exc, self._errors) else logging.ERROR
                    logger.log(
                        level,
                        "Lost the Redis message bus (%s); reconnecting",
                        _describe(exc),
                        exc_info=not isinstance(exc, self._errors),
                    )
                if self.connected:
                    delay, failures = self._backoff[0], 0
                failures += 1
            finally:
                self._disconnected()
                with anyio.move_on_after(self.timeout, shield=True), contextlib.suppress(Exception):
                    await pubsub.aclose()
            # Jitter: the workers of a deployment should not all reconnect in the same instant.
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff[1])

    async def _serve(self, pubsub: PubSub) -> None:
        """Run one pub/sub connection until it fails (raises); re-subscribes every wanted channel first."""
        with anyio.fail_after(self.timeout):
            await pubsub.connect()
        connection = pubsub.connection
        self.connected = True
        if self.connections:
            logger.info("Redis message bus reconnected; subscribing to %d channel(s)", len(self._fanout.channels()))
        self.connections += 1
        reading = asyncio.get_running_loop().create_task(self._read(connection), name="mcp-asgi redis bus read")
        try:
            while True:
                self._wake.clear()
                await self._sync(connection)
                waking = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({reading, waking}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waking.cancel()
                if reading.done():
                    reading.result()  # raises what ended the connection
                    raise ConnectionError("the pub/sub reader stopped")
        finally:
            reading.cancel()
            await asyncio.wait({reading})

    async def _sync(self, connection: Any) -> None:
        """Bring the connection's subscriptions in line with the channels that have local subscribers."""
        wanted = {self.prefix + channel for channel in self._fanout.channels()}
        leave = sorted(self._sent - wanted)
        join = sorted(wanted - self._sent)
        if leave:
            for name in leave:
                self._sent.discard(name)
                # Not confirmed from the moment UNSUBSCRIBE is sent: a re-subscribe must wait for its own reply.
                self._confirmed.discard(name)
                self._awaiting[name] = self._awaiting.get(name, 0) + 1
            await self._send(connection, "UNSUBSCRIBE", *leave)
        if join:
            for name in join:
                self._sent.add(name)
                self._awaiting[name] = self._awaiting.get(name, 0) + 1
            await self._send(connection, "SUBSCRIBE", *join)

    async def _send(self, connection: Any, *args: str) -> None:
        # Straight on the connection, without redis-py's retry: a retry would reconnect silently
        # and lose the subscriptions; here any failure restarts the whole connection instead.
        if not connection.is_connected:
            raise ConnectionError("the pub/sub connection closed")
        with anyio.fail_after(self.timeout):
            await connection.send_command(*args, check_health=False)

    async def _read(self, connection: Any) -> None:
        """Read replies and messages until the connection fails; a silent connection is PINGed, then dropped."""
        pinged = False
        while True:
            if not connection.is_connected:
                raise ConnectionError("the pub/sub connection closed")
            # Raw bytes even from a decode_responses=True client: a payload that is not UTF-8 is then
            # one ignored message rather than a decoding error that costs the connection.
            response = await connection.read_response(
                disable_decoding=True, timeout=self.health_interval, push_request=True
            )
            if response is None:  # nothing for `health_interval` seconds
                if pinged:
                    raise TimeoutError(f"Redis did not answer a PING within {self.health_interval:g} s")
                pinged = True
                await self._send(connection, "PING")
                continue
            pinged = False
            self._handle(response)

    def _handle(self, response: Any) -> None:
        if not isinstance(response, (list, tuple)) or len(response) < 3:
            return  # PONG outside subscribed mode
        kind = _text(response[0])
        if kind == "message":
            self._dispatch(_text(response[1]), response[2])
        elif kind in ("subscribe", "unsubscribe"):
            name = _text(response[1])
            left = self._awaiting.get(name, 0) - 1
            if left > 0:
                self._awaiting[name] = left
                return
            self._awaiting.pop(name, None)
            if name in self._sent:
                self._confirmed.add(name)
                self._notify()

    def _dispatch(self, name: str, data: Any) -> None:
        if not name.startswith(self.prefix):
            return
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            # Someone else publishing on our prefix; never let it reach a stream.
            self.malformed += 1
            logger.warning("Ignored a message on %r that is not a JSON object", name)
            return
        self.received += 1
        self._fanout.deliver(name[len(self.prefix) :], message)

    def _disconnected(self) -> None:
        self.connected = False
        self._sent.clear()
        self._awaiting.clear()
        self._confirmed.clear()
        self._notify()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
