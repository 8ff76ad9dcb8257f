"""Streamable HTTP, 2025 revisions: `initialize` opens a session; its requests, GET stream and DELETE.

A session is a record in the endpoint's `SessionStore`; no task lives per session.
What outlives one POST is registered with the endpoint: the calls in flight (for
`notifications/cancelled` and DELETE), the GET stream (the broker), requests sent
to the client (`PendingRequests`), and 2025-11-25 resumable streams (`events`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from mcp_asgi.concurrency import DisconnectWatcher, TaskCancelScope, forward_with_keepalive
from mcp_asgi.principal import principal_of
from mcp_asgi.protocol.dispatch import build_call, unsupported_version
from mcp_asgi.protocol.jsonrpc import (
    INVALID_REQUEST,
    NOTIFICATION,
    REQUEST,
    RESPONSE,
    MCPError,
    RequestId,
    encode,
    result_response,
)
from mcp_asgi.protocol.notifications import event_message
from mcp_asgi.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS, REVISIONS
from mcp_asgi.transports.conversation import DEFAULT_MAX_IN_FLIGHT, check_max_in_flight, too_many_in_flight
from mcp_asgi.transports.events import ResumableReply, resume_stream
from mcp_asgi.transports.http_common import SSE_HEADERS, SSE_KEEPALIVE, accepts, send_bytes, send_error, sse_event
from mcp_asgi.transports.http_reply import JSONOrSSEReply, answer
from mcp_asgi.transports.session_relay import GetStream
from mcp_asgi.transports.sessions import SERVER_BUSY, SessionRecord, new_session_id

if TYPE_CHECKING:
    from mcp_asgi.transports.streamable_http import StreamableHTTPEndpoint

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
RESOURCE_UPDATED = "notifications/resources/updated"


def _session_not_found() -> MCPError:
    return MCPError(INVALID_REQUEST, "Session not found: it ended or never existed", http_status=404)


class InFlightCalls:
    """The running calls of each session by request id: what `notifications/cancelled` and DELETE cancel.

    At most `max_per_session` per session: each holds its params and a task until it ends,
    so past that a new request is refused with 503 (-32000) and the running ones go on.
    """

    def __init__(self, max_per_session: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self.max_per_session = check_max_in_flight(max_per_session)
        self._calls: dict[str, dict[RequestId, TaskCancelScope]] = {}

    def start(self, session_id: str, request_id: RequestId) -> TaskCancelScope:
        """The cancel scope of a new call; -32600 if the session already runs one with this id, 503 if full."""
        calls = self._calls.setdefault(session_id, {})
        if request_id in calls:
            raise MCPError(
                INVALID_REQUEST, f"Invalid Request: request id {request_id!r} is already in flight", http_status=400
            )
        if len(calls) >= self.max_per_session:
            raise too_many_in_flight(self.max_per_session, http_status=503)
        scope = calls[request_id] = TaskCancelScope()
        return scope

    def finish(self, session_id: str, request_id: RequestId) -> None:
        calls = self._calls.get(session_id)
        if calls is not None:
            calls.pop(request_id, None)
            if not calls:
                del self._calls[session_id]

    def cancel(self, session_id: str, request_id: Any) -> None:
        # The id comes from a client's notification: anything that is not a request id matches nothing.
        if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
            scope = self._calls.get(session_id, {}).get(request_id)
            if scope is not None:
                scope.cancel()

    def cancel_session(self, session_id: str) -> None:
        for scope in self._calls.pop(session_id, {}).values():
            scope.cancel()


async def serve_session_post(
    endpoint: StreamableHTTPEndpoint,
    request: Request,
    send: Send,
    headers: dict[str, str],
    message: dict[str, Any],
    kind: str,
) -> None:
    """Answer one POSTed message of a 2025 session (or of a `stateless=True` endpoint)."""
    header_version = headers.get(VERSION_HEADER)
    if kind == REQUEST and message["method"] == "initialize":
        await _initialize(endpoint, request, send, message)
        return
    session: SessionRecord | None = None
    session_headers: list[tuple[bytes, bytes]] = []
    if endpoint.stateless:
        version = header_version or "2025-03-26"
    else:
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise MCPError(
                INVALID_REQUEST,
                "Bad Request: missing Mcp-Session-Id header; send initialize first "
                "(or use the 2026-07-28 revision, which needs no session)",
                http_status=400,
            )
        session = await _owned_session(endpoint, session_id, request.scope)
        version = session.protocol_version or header_version or "2025-03-26"
        session_headers = [(b"mcp-session-id", session_id.encode())]
    revision = REVISIONS[version]
    if header_version is not None and header_version not in LEGACY_VERSIONS:
        raise unsupported_version(header_version)
    if kind == NOTIFICATION:
        await _notification(endpoint, session, message["method"], message.get("params") or {})
        await send_bytes(send, 202, b"", session_headers)
        return
    if kind == RESPONSE:
        await endpoint.relay.answer(session.session_id if session is not None else None, message)
        await send_bytes(send, 202, b"", session_headers)
        return
    await _session_call(endpoint, request, send, message, revision, session, session_headers)


def _origin(request: Request) -> dict[str, Any]:
    return {"request": request, "host_app": request.scope.get("mcp_asgi.host_app")}


async def _session_call(
    endpoint: StreamableHTTPEndpoint,
    request: Request,
    send: Send,
    message: dict[str, Any],
    revision: Any,
    session: SessionRecord | None,
    session_headers: list[tuple[bytes, bytes]],
) -> None:
    reply: JSONOrSSEReply | ResumableReply
    close_stream = None
    if session is not None and revision.sse_event_ids:
        allow_sse = not endpoint.json_response
        reply = ResumableReply(
            send, session_headers, allow_sse, endpoint.events, session.session_id, endpoint.sse_retry_ms
        )
        close_stream = reply.close
    else:
        reply = JSONOrSSEReply(send, session_headers, allow_sse=not endpoint.json_response)

    async def request_client(method: str, params: dict[str, Any]) -> Any:
        return await _request_client(endpoint, session, reply, method, params)

    call = build_call(
        message,
        revision,
        session=session,
        sessions=endpoint.sessions if session is not None else None,
        **_origin(request),
        send=reply.early,
        request_client=request_client,
        close_stream=close_stream,
    )
    if session is None:  # a stateless endpoint: nothing to cancel the call by, nothing to save
        await answer(endpoint.server._core, call, reply)
        return
    scope = endpoint.in_flight.start(session.session_id, call.request_id)
    try:
        with scope:
            await answer(endpoint.server._core, call, reply)
    finally:
        endpoint.in_flight.finish(session.session_id, call.request_id)
    if scope.cancelled_caught:
        # notifications/cancelled or DELETE: the client expects no response; end the HTTP exchange quietly.
        await reply.finish(None)


async def _request_client(
    endpoint: StreamableHTTPEndpoint,
    session: SessionRecord | None,
    reply: JSONOrSSEReply | ResumableReply,
    method: str,
    params: dict[str, Any],
) -> Any:
    """Send a request to the client on the call's stream (or the GET stream) and await its answer."""
    session_id = session.session_id if session is not None else None

    async def deliver(message: dict[str, Any]) -> None:
        if await reply.early(message):
            return
        if session_id is None or not await endpoint.relay.publish(session_id, message):
            if session_id is not None and endpoint.broker.has_listener(session_id):
                raise MCPError(
                    SERVER_BUSY,
                    f"Cannot send {method} to the client: the session's GET stream is full "
                    "(too many messages wait for the client to read them); try again later",
                )
            raise MCPError(
                INVALID_REQUEST,
                f"Cannot send {method} to the client: this reply is JSON (json_response=True) "
                "and the session has no open GET stream",
            )

    alive = getattr(endpoint.sessions, "alive", None)  # optional in a SessionStore
    if session_id is None or alive is None:
        return await endpoint.pending.ask(session_id, method, params, deliver)

    async def session_alive() -> bool:
        try:
            return await alive(session_id)
        except MCPError:
            return True  # the store is unreachable, not the session gone: the timeout still bounds the wait

    return await endpoint.pending.ask(session_id, method, params, deliver, alive=session_alive)


async def _initialize(endpoint: StreamableHTTPEndpoint, request: Request, send: Send, message: dict[str, Any]) -> None:
    principal = principal_of(request.scope)
    session = None if endpoint.stateless else SessionRecord(session_id=new_session_id(), principal=principal)
    call = build_call(message, REVISIONS["2025-03-26"], session=session, **_origin(request))
    result = await endpoint.server._core.handle(call)
    extra: list[tuple[bytes, bytes]] = []
    if session is not None:
        await endpoint.sessions.create(session)
        endpoint.server._sweeper.ensure_running()
        extra.append((b"mcp-session-id", session.session_id.encode()))
    await send_bytes(send, 200, encode(result_response(call.request_id, result)), extra)


async def _notification(
    endpoint: StreamableHTTPEndpoint, session: SessionRecord | None, method: str, params: dict[str, Any]
) -> None:
    if method == "notifications/initialized":
        if session is not None and not session.initialized:
            await endpoint.sessions.update(session.session_id, initialized=True)
    elif method == "notifications/cancelled" and session is not None:
        await endpoint.relay.cancel(session.session_id, params.get("requestId"))


# GET: the session's stream of server-initiated messages.
async def serve_get(
    endpoint: StreamableHTTPEndpoint, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
) -> None:
    try:
        session_id, record = await _stream_session(endpoint, scope, headers)
        last_event_id = headers.get("last-event-id")
        revision = REVISIONS.get(record.protocol_version or "")
        if last_event_id is not None and revision is not None and revision.sse_event_ids:
            # A resumption, not the session's standalone stream: no broker, no 409.
            if await resume_stream(
                endpoint.events,
                session_id,
                last_event_id,
                receive,
                send,
                keepalive_interval=endpoint.keepalive_interval,
                retry_ms=endpoint.sse_retry_ms,
            ):
                return
            # Not 404: with a session id that tells the client its session is gone (it must start
            # a new one), yet only this stream is. Nor the standalone stream in its place, which
            # would never carry the response the client waits for. The event id is what is bad.
            raise MCPError(
                INVALID_REQUEST,
                "Bad Request: Last-Event-ID names no stream this session can resume (unknown, or its events expired)",
                http_status=400,
            )
        # Held by this worker or another: the claim in the backend says.
        stream = await endpoint.relay.open(session_id)
        if stream is None:
            raise MCPError(INVALID_REQUEST, "Conflict: this session already has an open GET stream", http_status=409)
    except MCPError as error:
        extra = [(b"allow", b"POST")] if error.http_status == 405 else None
        await send_error(send, error, headers=extra)
        return
    try:
        await _run_get_stream(endpoint, record, stream, receive, send)
    finally:
        await endpoint.relay.close(stream)


async def _stream_session(
    endpoint: StreamableHTTPEndpoint, scope: Scope, headers: dict[str, str]
) -> tuple[str, SessionRecord]:
    if endpoint.stateless or headers.get(VERSION_HEADER) in MODERN_VERSIONS:
        raise MCPError(INVALID_REQUEST, "Method Not Allowed: this endpoint has no GET stream", http_status=405)
    if not accepts(headers.get("accept"), "text/event-stream"):
        raise MCPError(
            INVALID_REQUEST, "Not Acceptable: the Accept header must list text/event-stream", http_status=406
        )
    session_id = headers.get(SESSION_HEADER)
    if session_id is None:
        raise MCPError(INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header", http_status=400)
    # Resumption included: its events are read for this session only, so only its creator reads them.
    return session_id, await _owned_session(endpoint, session_id, scope)


async def _owned_session(endpoint: StreamableHTTPEndpoint, session_id: str, scope: Scope) -> SessionRecord:
    """The session if this request's principal created it; else 404, exactly as for an unknown session."""
    # Another principal (or none) learns nothing from a stolen id: not even that the session exists.
    record = await endpoint.sessions.get(session_id, principal=principal_of(scope))
    if record is None:
        raise _session_not_found()
    # From now on this worker hears what other workers say of sessions (cancel, end, answers).
    await endpoint.relay.connect()
    return record


async def _run_get_stream(
    endpoint: StreamableHTTPEndpoint, record: SessionRecord, stream: GetStream, receive: Receive, send: Send
) -> None:
    """The open GET stream: broker messages and list changes, keep-alives, until either side ends it."""
    # Every change comes through; resource updates are checked against the store's subscriptions when
    # they arrive, so a resources/subscribe sent after the stream opened (on any worker) counts.
    changes, stop_changes = endpoint.server._hub.listen(event_message)
    lock = anyio.Lock()

    async def emit(body: bytes) -> None:
        async with lock:
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def forward_changes(group: anyio.abc.TaskGroup) -> None:
        async for change in changes:
            if change["method"] == RESOURCE_UPDATED:
                try:
                    if not await endpoint.sessions.subscribed(record.session_id, change["params"]["uri"]):
                        continue
                except MCPError:
                    break  # the store is unreachable: end the stream; the client reconnects when it is back
            await emit(sse_event(change))
        group.cancel_scope.cancel()  # the server is shutting down, or the store is unreachable

    async def hold_claim() -> None:
        while True:
            await anyio.sleep(endpoint.relay.claim_refresh)
            await stream.keep()

    try:
        headers = SSE_HEADERS + [(b"mcp-session-id", record.session_id.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await emit(b": stream open\n\n")
        with DisconnectWatcher(receive):
            async with anyio.create_task_group() as group:
                group.start_soon(forward_changes, group)
                group.start_soon(stream.pump)
                group.start_soon(hold_claim)
                await forward_with_keepalive(
                    stream.inbox,
                    lambda item: emit(sse_event(item)),
                    lambda: emit(SSE_KEEPALIVE),
                    endpoint.keepalive_interval,
                )
                group.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass
    finally:
        stop_changes()


# DELETE: the client ends its session.
async def serve_delete(endpoint: StreamableHTTPEndpoint, scope: Scope, send: Send, headers: dict[str, str]) -> None:
    try:
        if endpoint.stateless or headers.get(VERSION_HEADER) in MODERN_VERSIONS:
            raise MCPError(INVALID_REQUEST, "Method Not Allowed: this endpoint has no sessions", http_status=405)
        session_id = headers.get(SESSION_HEADER)
        if session_id is None:
            raise MCPError(INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header", http_status=400)
        await _owned_session(endpoint, session_id, scope)
        if not await endpoint.sessions.delete(session_id):
            raise _session_not_found()
    except MCPError as error:
        extra = [(b"allow", b"POST")] if error.http_status == 405 else None
        await send_error(send, error, headers=extra)
        return
    # The session's calls end now: a tool awaiting the client (ctx.elicit) stops at once instead of
    # waiting out the client-request timeout for an answer that can no longer come.
    # On every worker: another may hold the GET stream or run the calls.
    try:
        await endpoint.relay.end(session_id)
    finally:
        await endpoint.events.forget_session(session_id)
    await send_bytes(send, 200, b"")
