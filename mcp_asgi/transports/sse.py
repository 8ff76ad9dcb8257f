"""The legacy HTTP+SSE transport (revision 2024-11-05), for clients that still speak it.

`GET /sse` opens a stream whose first event names the URL to POST messages to;
each POST is answered `202 Accepted` and its JSON-RPC response arrives on the
stream. A POST taken by the worker that holds the stream hands the message to
it through the in-process broker; a POST taken by another worker (several
workers behind a round-robin balancer) is forwarded over the backend's bus on
channel `sse:{session id}`, to which the holding worker subscribed before it
named the endpoint: 202 when a worker took it, 404 when none holds the stream.
The session record lives in the backend's store, so any worker checks who may
post. The stream answers requests concurrently in the task group of its
(long-lived by nature) connection.

The hot path (a call POSTed to the worker holding the stream) takes a shortcut: when the
stream's reader waits on an empty inbox, everything POSTed before has been handed on, so the
POST hands its request to the conversation itself, which starts the call's task at once,
instead of queueing it for the stream's task to wake up and hand on (see `_Channel`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import anyio
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from mcp_asgi.asgi.security import HostOriginGuard, guarded
from mcp_asgi.bus import Bus, LocalBus, Subscription
from mcp_asgi.concurrency import DisconnectWatcher, forward_with_keepalive, write_lock
from mcp_asgi.principal import principal_of
from mcp_asgi.protocol.jsonrpc import (
    INVALID_REQUEST,
    REQUEST,
    MCPError,
    classify,
    decode,
    error_response,
    request_id_of,
)
from mcp_asgi.transports.broker import Inbox, InProcessBroker
from mcp_asgi.transports.conversation import DEFAULT_MAX_IN_FLIGHT, Conversation, check_max_in_flight
from mcp_asgi.transports.http_common import (
    BODY_TIMEOUT,
    SSE_HEADERS,
    SSE_KEEPALIVE,
    read_body,
    send_bytes,
    send_error,
    sse_event,
)
from mcp_asgi.transports.sessions import InMemorySessionStore, SessionRecord, SessionStore, new_session_id

if TYPE_CHECKING:
    from mcp_asgi.auth.bearer import AuthGate
    from mcp_asgi.backend import Backend
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")

# Clients of this transport that send no protocolVersion are assumed to speak the revision it belongs to.
SSE_REVISION = "2024-11-05"


def _not_allowed(method: str, allowed: str) -> MCPError:
    return MCPError(INVALID_REQUEST, f"Method {method} not allowed here; use {allowed}", http_status=405)


def _session_id_of(query_string: bytes) -> str | None:
    """The session id a POST's query names."""
    # A client repeats the same short query on every POST; a long one is not kept (bounded memory).
    return _cached_session_id_of(query_string) if len(query_string) <= 256 else _parse_session_id(query_string)


def _parse_session_id(query_string: bytes) -> str | None:
    query = parse_qs(query_string.decode("latin-1"))
    session_ids = query.get("session_id") or query.get("sessionId")
    return session_ids[0] if session_ids else None


_cached_session_id_of = functools.lru_cache(maxsize=1024)(_parse_session_id)


class _AnswerTasks:
    """Where a stream's conversation runs its calls: plain asyncio tasks, in the stream's context.

    `Conversation` needs only `start_soon`. An anyio task group gives each task a cancel scope
    of its own on top of the task (a seventh of a legacy call's instructions, measured); these are
    cancelled and awaited when the stream ends, as the group's would be. They run in the
    context of the GET that opened the stream even when a POST's task starts them (the
    shortcut of `SSEEndpoint.messages`): a host's per-request context (Django's thread-sensitive
    one) must be the stream's, which outlives the POST.
    """

    __slots__ = ("_context", "_tasks", "_on_failure")

    def __init__(self, on_failure: Callable[[], None]) -> None:
        self._context = contextvars.copy_context()
        self._tasks: set[asyncio.Future[None]] = set()
        # Ends the stream: a task that fails (its client went away) fails it, as in a task group.
        self._on_failure = on_failure

    def start_soon(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        task = self._context.run(asyncio.ensure_future, fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            if not isinstance(error, OSError):
                logger.error("A legacy SSE stream's task failed", exc_info=error)
            self._on_failure()

    async def aclose(self) -> None:
        """Cancel the calls still running and wait for them: nothing writes after the stream ends."""
        with anyio.CancelScope(shield=True):
            while self._tasks:
                for task in self._tasks:
                    task.cancel()
                await asyncio.wait(set(self._tasks))


class _Channel:
    """One open stream as the POSTs this worker takes see it: its conversation and inbox.

    `idle` is True while the stream's reader waits on an empty inbox: everything POSTed
    before has then been handed to the conversation, so a request may go to it straight
    from its POST without overtaking anything. Every message queued here counts in
    `queued` until the reader takes it.
    """

    __slots__ = ("conversation", "inbox", "idle", "queued")

    def __init__(self, inbox: Inbox) -> None:
        # Set once the stream runs; a POST that comes sooner only queues its message.
        self.conversation: Conversation | None = None
        self.inbox = inbox
        self.idle = False
        self.queued = 0

    async def receive(self) -> dict[str, Any]:
        """The inbox's next message, for the stream's reader."""
        if not self.queued:
            self.idle = True
        try:
            message = await self.inbox.receive()
        finally:
            self.idle = False
        self.queued -= 1
        return message

    def queue(self) -> None:
        """A message was put in the inbox: until the reader took it, nothing may overtake it."""
        self.queued += 1
        self.idle = False


class SSEEndpoint:
    """The two ASGI endpoints of the legacy transport: `stream` (GET) and `messages` (POST)."""

    def __init__(
        self,
        server: MCPServer,
        *,
        message_path: str = "/messages/",
        session_store: SessionStore | None = None,
        broker: InProcessBroker | None = None,
        keepalive_interval: float = 15.0,
        max_body_size: int = 4 * 1024 * 1024,
        body_timeout: float = BODY_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        backend: Backend | None = None,
    ) -> None:
        if body_timeout <= 0:
            raise ValueError(f"`body_timeout` must be a positive number of seconds; got {body_timeout!r}")
        self.body_timeout = body_timeout
        if not message_path.startswith("/"):
            raise ValueError(f"`message_path` must start with '/', got {message_path!r}")
        if keepalive_interval <= 0:
            raise ValueError("`keepalive_interval` must be a positive number of seconds")
        self.server = server
        self.message_path = message_path
        # Sessions and the bus of the workers; without one, this process alone.
        self.backend = backend
        if session_store is None:
            session_store = backend.sessions if backend is not None else InMemorySessionStore()
        self.sessions: SessionStore = session_store
        self._local_bus = LocalBus()
        # Carries each POSTed message to the stream of its session, inside this worker.
        self.broker = broker if broker is not None else InProcessBroker()
        self.keepalive_interval = keepalive_interval
        self.max_body_size = max_body_size
        # Requests one stream may have running; the streams open in this worker, to admit POSTs.
        self.max_in_flight = check_max_in_flight(max_in_flight)
        self._channels: dict[str, _Channel] = {}

    def endpoint_url(self, scope: Scope, session_id: str) -> str:
        """Where the client POSTs: right under any mount prefix and uvicorn's --root-path."""
        root = scope.get("root_path", "").rstrip("/")
        return f"{root}{self.message_path}?session_id={quote(session_id)}"

    @property
    def bus(self) -> Bus:
        """The bus POSTs reach the stream's worker by (the backend's is there once it started)."""
        return self.backend.bus if self.backend is not None else self._local_bus

    # GET: the stream.
    async def stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await send_error(send, _not_allowed(scope["method"], "GET"), headers=[(b"allow", b"GET")])
            return
        session = SessionRecord(session_id=new_session_id(), principal=principal_of(scope))
        try:
            await self.server.ensure_started(scope)
            # A full store refuses with 503 before the stream opens.
            await self.sessions.create(session)
        except MCPError as error:
            await send_error(send, error)
            return
        self.server._sweeper.ensure_running()
        inbox = self.broker.listen(session.session_id)
        channel = self._channels[session.session_id] = _Channel(inbox)
        forwarded: Subscription | None = None
        lock = write_lock()

        async def write(message: Any, *, event: str | None = "message") -> None:
            async with lock:
                body = SSE_KEEPALIVE if message is None else sse_event(message, event)
                await send({"type": "http.response.body", "body": body, "more_body": True})

        try:
            try:
                # Before the client learns where to POST: a POST to another worker must find this one.
                forwarded = await self._listen_forwarded(session.session_id)
            except MCPError as error:
                await send_error(send, error)
                return
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await write(self.endpoint_url(scope, session.session_id).encode(), event="endpoint")
            with DisconnectWatcher(receive):
                async with anyio.create_task_group() as group:
                    answers = _AnswerTasks(group.cancel_scope.cancel)
                    conversation = channel.conversation = Conversation(
                        self.server,
                        write,
                        answers,  # type: ignore[arg-type]  # what Conversation uses of a task group
                        session=session,
                        allow_modern=False,
                        default_version=SSE_REVISION,
                        sessions=self.sessions,
                        host_app=scope.get("mcp_asgi.host_app"),
                        request=Request(scope),
                        max_in_flight=self.max_in_flight,
                    )
                    group.start_soon(self._take_forwarded, forwarded, channel, write, group.cancel_scope)

                    async def keep_alive() -> None:
                        await write(None)
                        # The open stream is the session's activity: touch it, or it would expire
                        # while the client, with nothing to POST, waits for messages.
                        if await self.sessions.get(session.session_id) is None:
                            group.cancel_scope.cancel()  # expired anyway: its POSTs get 404, so end it

                    try:
                        # Until the broker closes the inbox (shutdown) or the client leaves.
                        await forward_with_keepalive(channel, conversation.receive, keep_alive, self.keepalive_interval)
                    finally:
                        conversation.stop_following()
                        self._forget(session.session_id, channel)
                        await answers.aclose()
                    group.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass
        finally:
            if forwarded is not None:
                forwarded.close()
            self._forget(session.session_id, channel)
            self.broker.unlisten(session.session_id, inbox)
            with anyio.CancelScope(shield=True):
                await self._delete_session(session.session_id)

    def _forget(self, session_id: str, channel: _Channel) -> None:
        # Only this stream's: the session id cannot be reused, but be as careful as the broker.
        if self._channels.get(session_id) is channel:
            del self._channels[session_id]

    async def _delete_session(self, session_id: str) -> None:
        try:
            await self.sessions.delete(session_id)
        except MCPError as error:
            # A shared store that is down: the record expires there by itself (its idle timeout).
            logger.warning("Could not delete legacy SSE session %s: %s", session_id, error.message)

    async def _listen_forwarded(self, session_id: str) -> Subscription:
        """Subscribe to the POSTs other workers forward for this stream; confirmed where the bus can say."""
        bus = self.bus
        channel = "sse:" + session_id
        subscription = bus.subscribe(channel)
        ready = getattr(bus, "ready", None)  # a shared bus confirms its subscription; LocalBus needs not
        if ready is not None:
            try:
                await ready(channel)
            except BaseException:
                subscription.close()
                raise
        return subscription

    async def _take_forwarded(
        self, forwarded: Subscription, channel: _Channel, write: Any, stream_scope: anyio.CancelScope
    ) -> None:
        """Hand what other workers forward to this stream, like a POST taken here; ends the stream with the bus."""
        session_id = forwarded.channel.removeprefix("sse:")
        async for item in forwarded:
            message, size = item.get("message"), item.get("size")
            try:
                # Its worker checked it; what else reaches the channel is not trusted.
                is_request = classify(message) == REQUEST
            except MCPError:
                logger.warning("Ignored a malformed message forwarded for SSE session %s", session_id)
                continue
            conversation = channel.conversation
            assert conversation is not None  # set before this task starts
            try:
                if is_request:
                    conversation.reserve()
                if not await self.broker.publish(session_id, message, size=size if isinstance(size, int) else None):
                    if is_request:
                        conversation.release()
                    raise MCPError(
                        INVALID_REQUEST, "Too many messages waiting for this session; retry", http_status=503
                    )
                channel.queue()
            except MCPError as error:
                # The POST was answered 202 on its worker: the refusal goes to the stream, as its answer.
                if is_request:
                    await write(error_response(request_id_of(message), error))
                else:
                    logger.warning("Dropped a forwarded message for SSE session %s: %s", session_id, error.message)
        # The bus dropped this stream (it fell behind) or closed: POSTs elsewhere would be lost, so end it.
        stream_scope.cancel()

    # POST: one message for a stream.
    async def messages(self, scope: Scope, receive: Receive, send: Send) -> None:
        message: Any = None
        try:
            if scope["method"] != "POST":
                raise _not_allowed(scope["method"], "POST")
            session_id = _session_id_of(scope.get("query_string", b""))
            if session_id is None:
                raise MCPError(
                    INVALID_REQUEST,
                    "Bad Request: missing session_id query parameter; POST to the URL of the stream's endpoint event",
                    http_status=400,
                )
            # Only the stream's creator may post to it; anyone else is told what an unknown id gets.
            record = await self.sessions.get(session_id, principal=principal_of(scope))
            if record is None:
                raise MCPError(
                    INVALID_REQUEST, "Session not found: its SSE stream closed or never existed", http_status=404
                )
            headers = dict(scope["headers"])
            declared = headers.get(b"content-length")
            body = await read_body(
                receive, self.max_body_size, declared.decode() if declared else None, self.body_timeout
            )
            message = decode(body)
            try:
                kind = classify(message)
            except MCPError as error:
                error.http_status = 400
                raise
            if not self.broker.has_listener(session_id):
                # The stream is on another worker (or gone): forward the message there.
                if not await self.bus.publish("sse:" + session_id, {"message": message, "size": len(body)}):
                    raise MCPError(INVALID_REQUEST, "Session not found: its SSE stream closed", http_status=404)
                await send_bytes(send, 202, b"Accepted", content_type=(b"content-type", b"text/plain; charset=utf-8"))
                return
            await self._hand_to_stream(session_id, message, kind, len(body))
        except MCPError as error:
            extra = [(b"allow", b"POST")] if error.http_status == 405 else None
            await send_error(send, error, request_id_of(message), headers=extra)
            return
        except ConnectionAbortedError:
            return
        await send_bytes(send, 202, b"Accepted", content_type=(b"content-type", b"text/plain; charset=utf-8"))

    async def _hand_to_stream(self, session_id: str, message: Any, kind: str, size: int) -> None:
        """Give a POSTed message to the stream this worker holds: straight to its conversation, or queued."""
        channel = self._channels.get(session_id)
        conversation = channel.conversation if channel is not None and kind == REQUEST else None
        if channel is not None and conversation is not None:
            # A request takes an in-flight slot of its stream now: past the limit, this POST is the 503.
            conversation.reserve()
            if channel.idle:
                # Nothing is queued before it: the conversation starts the call now, which is what the
                # stream's reader would do once woken (see the module's docstring).
                try:
                    await conversation.receive(message)
                except OSError:
                    pass  # an error written to a stream whose client left: the stream is ending anyway
                return
        if not await self.broker.publish(session_id, message, size=size):
            if conversation is not None:
                conversation.release()
            if self.broker.has_listener(session_id):
                raise MCPError(INVALID_REQUEST, "Too many messages waiting for this session; retry", http_status=503)
            raise MCPError(INVALID_REQUEST, "Session not found: its SSE stream closed", http_status=404)
        if channel is not None:
            channel.queue()


def build_sse_routes(
    server: MCPServer,
    path: str,
    message_path: str,
    *,
    json_response: bool = False,
    stateless: bool = False,
    session_store: SessionStore | None = None,
    keepalive_interval: float = 15.0,
    max_body_size: int = 4 * 1024 * 1024,
    guard: HostOriginGuard | None = None,
    body_timeout: float = BODY_TIMEOUT,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    backend: Backend | None = None,
    gate: AuthGate | None = None,
) -> tuple[SSEEndpoint, list[BaseRoute]]:
    """The endpoint and routes `http_app(transport="sse")` serves."""
    from mcp_asgi.auth.bearer import protected
    from mcp_asgi.http_app import EndpointRoute

    if json_response or stateless:
        raise ValueError("`json_response` and `stateless` apply to Streamable HTTP only, not transport='sse'")
    if path.rstrip("/") == message_path.rstrip("/"):
        raise ValueError(f"`path` and `message_path` must differ; both are {path!r}")
    endpoint = SSEEndpoint(
        server,
        message_path=message_path,
        session_store=session_store,
        keepalive_interval=keepalive_interval,
        max_body_size=max_body_size,
        body_timeout=body_timeout,
        max_in_flight=max_in_flight,
        backend=backend,
    )
    stream, messages = endpoint.stream, endpoint.messages
    if gate is not None:
        # Inside the guard: a request is checked for its Host/Origin first, then for its token.
        stream, messages = protected(gate, stream), protected(gate, messages)
    if guard is not None:
        stream, messages = guarded(guard, stream), guarded(guard, messages)
    routes: list[BaseRoute] = [
        EndpointRoute(path, stream, name="sse"),
        EndpointRoute(message_path, messages, name="messages"),
    ]
    return endpoint, routes
