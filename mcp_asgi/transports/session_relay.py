"""2025 sessions across workers: what one worker hears of a session another worker serves.

Every worker of a shared backend can receive any request of a session, so this relays, over
the backend's bus:

- the GET stream: the worker holding it claims `get:{sid}` in the backend (one stream per
  session across workers, refreshed on keep-alive) and subscribes to `session:{sid}`;
  messages for that stream (server-to-client requests) go straight to a local inbox, else
  onto that channel; the holder renews its claim every few seconds and ends the stream when
  the session is gone (a DELETE whose broadcast it missed, idle expiry);
- control: `notifications/cancelled` and DELETE are broadcast on `control`; each worker
  cancels its own in-flight calls of the session and ends its GET stream there;
- answers to server-to-client requests: the request id names the asking worker
  (`PendingRequests`), so an answer POSTed elsewhere goes to `worker:{id}`.

One subscription per worker for `control` and `worker:{id}`, opened with the first request;
with a `LocalBus` (one worker) the same code runs and every message stays in the process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.protocol.pending import worker_of
from mcp_asgi.transports.broker import Inbox

if TYPE_CHECKING:
    from mcp_asgi.transports.streamable_http import StreamableHTTPEndpoint

logger = logging.getLogger("mcp_asgi")

CONTROL_CHANNEL = "control"


def session_channel(session_id: str) -> str:
    return f"session:{session_id}"


def worker_channel(worker_id: str) -> str:
    return f"worker:{worker_id}"


async def _ready(bus: Any, subscription: Any) -> None:
    """Wait until a shared bus confirms `subscription` (a local bus needs no wait)."""
    ready = getattr(bus, "ready", None)
    if ready is None:
        return
    try:
        await ready(subscription.channel)
    except BaseException:
        subscription.close()
        raise


class GetStream:
    """A session's GET stream held by this worker: its claim, its local inbox and its bus subscription."""

    def __init__(self, relay: SessionRelay, session_id: str, token: str, inbox: Inbox, subscription: Any) -> None:
        self.relay = relay
        self.session_id = session_id
        self.token = token
        self.inbox = inbox
        self.subscription = subscription

    async def pump(self) -> None:
        """Move what other workers publish for this stream into its inbox, until the subscription ends."""
        broker = self.relay.endpoint.broker
        async for item in self.subscription:
            message = item.get("message")
            if isinstance(message, dict) and not await broker.publish(self.session_id, message):
                logger.warning("A message for session %s was dropped: its GET stream is full", self.session_id)
        # The bus closed (shutdown) or this reader fell too far behind: end the stream; the client reconnects.
        self.inbox.end()

    async def keep(self) -> None:
        """Renew the claim; end the stream if the session ended or the claim was lost."""
        endpoint = self.relay.endpoint
        try:
            held = await endpoint.backend.refresh(_claim_key(self.session_id), self.token, self.relay.claim_ttl)
            alive = held and await endpoint.sessions.get(self.session_id) is not None
        except MCPError:
            return  # the backend is unreachable: the stream goes on, the claim lapses by itself
        if not alive:
            # Deleted (and the news missed us), expired, or another stream holds the claim now.
            self.inbox.end()


def _claim_key(session_id: str) -> str:
    return f"get:{session_id}"


class SessionRelay:
    """The cross-worker side of one Streamable HTTP endpoint's 2025 sessions."""

    def __init__(self, endpoint: StreamableHTTPEndpoint) -> None:
        self.endpoint = endpoint
        # The holder renews its claim this often, busy or quiet; a worker killed without releasing
        # it (SIGKILL) blocks a new GET stream of the session for at most `claim_ttl` seconds.
        self.claim_refresh = min(endpoint.keepalive_interval, 5.0)
        self.claim_ttl = 3 * self.claim_refresh
        self._tasks: dict[asyncio.AbstractEventLoop, list[asyncio.Task[None]]] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    # The worker-wide subscriptions.
    async def connect(self) -> None:
        """Listen on `control` and `worker:{id}` on this loop, unless already listening."""
        loop = asyncio.get_running_loop()
        tasks = self._tasks.get(loop)
        if tasks and not any(task.done() for task in tasks):
            return
        for closed in [other for other in self._tasks if other.is_closed()]:
            # An event loop that ended (a test's, a restarted server's): forget it and its tasks.
            self._tasks.pop(closed, None)
            self._connecting.pop(closed, None)
        async with self._connecting.setdefault(loop, asyncio.Lock()):
            tasks = self._tasks.get(loop)
            if tasks and not any(task.done() for task in tasks):
                return
            for task in tasks or ():
                task.cancel()
            bus = self.endpoint.backend.bus
            control = bus.subscribe(CONTROL_CHANNEL)
            answers = bus.subscribe(worker_channel(self.endpoint.backend.worker_id))
            try:
                await _ready(bus, control)
                await _ready(bus, answers)
            except BaseException:
                control.close()
                answers.close()
                raise
            self._tasks[loop] = [
                loop.create_task(self._read_control(control), name="mcp-asgi session control"),
                loop.create_task(self._read_answers(answers), name="mcp-asgi client answers"),
            ]

    async def _read_control(self, subscription: Any) -> None:
        async for item in subscription:
            session_id = item.get("session")
            if not isinstance(session_id, str):
                continue
            if item.get("kind") == "cancel":
                self.endpoint.in_flight.cancel(session_id, item.get("requestId"))
            elif item.get("kind") == "end":
                self.end_locally(session_id)

    async def _read_answers(self, subscription: Any) -> None:
        async for item in subscription:
            message = item.get("message")
            if isinstance(message, dict):
                self.endpoint.pending.answer(item.get("session"), message)

    # What any worker does for a session.
    def end_locally(self, session_id: str) -> None:
        """The session ended: its calls here stop (a tool awaiting the client too), its GET stream here ends."""
        self.endpoint.in_flight.cancel_session(session_id)
        self.endpoint.broker.close(session_id)

    async def end(self, session_id: str) -> None:
        """DELETE: end the session here at once, and on every other worker.

        The session is already gone from the store; if the bus is unreachable, a GET stream of it on
        another worker ends at its next keep-alive (which finds the session gone).
        """
        self.end_locally(session_id)
        try:
            await self._broadcast({"kind": "end", "session": session_id})
        except MCPError as error:
            logger.warning("Could not tell the other workers that session %s ended: %s", session_id, error.message)

    async def cancel(self, session_id: str, request_id: Any) -> None:
        """`notifications/cancelled`: cancel the call here at once, and on whichever worker runs it."""
        self.endpoint.in_flight.cancel(session_id, request_id)
        if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
            await self._broadcast({"kind": "cancel", "session": session_id, "requestId": request_id})

    async def _broadcast(self, message: dict[str, Any]) -> None:
        await self.endpoint.backend.bus.publish(CONTROL_CHANNEL, message)

    async def answer(self, session_id: str | None, message: dict[str, Any]) -> None:
        """A client's response: to the request waiting here, else to the worker that asked."""
        if self.endpoint.pending.answer(session_id, message):
            return
        worker = worker_of(message.get("id"))
        backend = self.endpoint.backend
        if session_id is None or worker is None or worker == backend.worker_id:
            return  # nothing waits for it (timed out, or never asked): dropped, as on one worker
        await backend.bus.publish(worker_channel(worker), {"session": session_id, "message": message})

    # The GET stream.
    async def open(self, session_id: str) -> GetStream | None:
        """Hold the session's GET stream on this worker; None when a stream is open anywhere (409)."""
        backend = self.endpoint.backend
        token = f"{backend.worker_id}:{secrets.token_hex(8)}"
        key = _claim_key(session_id)
        if not await backend.claim(key, token, self.claim_ttl):
            return None
        try:
            inbox = self.endpoint.broker.listen(session_id)
        except LookupError:
            await backend.release(key, token)
            return None
        try:
            subscription = backend.bus.subscribe(session_channel(session_id))
            await _ready(backend.bus, subscription)
        except BaseException:
            self.endpoint.broker.unlisten(session_id, inbox)
            await backend.release(key, token)
            raise
        return GetStream(self, session_id, token, inbox, subscription)

    async def close(self, stream: GetStream) -> None:
        stream.subscription.close()
        self.endpoint.broker.unlisten(stream.session_id, stream.inbox)
        try:
            await self.endpoint.backend.release(_claim_key(stream.session_id), stream.token)
        except Exception as error:  # it expires by itself
            logger.debug("Releasing the GET stream claim of %s failed: %s", stream.session_id, error)

    async def publish(self, session_id: str, message: dict[str, Any]) -> bool:
        """Send `message` down the session's GET stream, wherever it is; False if none is open or it is full."""
        broker = self.endpoint.broker
        if broker.has_listener(session_id):
            return await broker.publish(session_id, message)
        reached = await self.endpoint.backend.bus.publish(session_channel(session_id), {"message": message})
        return reached > 0
