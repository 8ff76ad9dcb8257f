"""The Streamable HTTP transport: one endpoint serving every protocol revision.

A request carrying modern `_meta` (2026-07-28) is served statelessly; an
`initialize` starts a 2025 session whose id later requests must carry. Each
reply is JSON unless something is sent before the result (progress, logs), in
which case the reply turns into an SSE stream at that moment: plain calls pay
for no stream, and no task group is needed to answer them. On 2025-11-25
sessions that stream is resumable with `Last-Event-ID` (see `events.py`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from mcp_asgi.asgi.security import HostOriginGuard
from mcp_asgi.protocol.dispatch import Call, build_call, read_modern_meta, unsupported_version
from mcp_asgi.protocol.jsonrpc import (
    HEADER_MISMATCH,
    INVALID_REQUEST,
    NOTIFICATION,
    REQUEST,
    RESPONSE,
    MCPError,
    classify,
    decode,
    encode,
    error_response,
    request_id_of,
    result_response,
)
from mcp_asgi.protocol.notifications import session_change
from mcp_asgi.protocol.param_headers import decode_header_value, validate_param_headers
from mcp_asgi.protocol.pending import PendingRequests
from mcp_asgi.protocol.versions import LEGACY_VERSIONS, MODERN_VERSIONS, NAMED_METHODS, REVISIONS, SUPPORTED_VERSIONS
from mcp_asgi.transports.broker import InProcessBroker
from mcp_asgi.transports.events import EventStore, InMemoryEventStore, ResumableReply, resume_stream
from mcp_asgi.transports.http_common import (
    SSE_HEADERS,
    SSE_KEEPALIVE,
    accepts,
    header_map,
    is_json_content_type,
    read_body,
    send_bytes,
    send_error,
    sse_event,
)
from mcp_asgi.transports.sessions import InMemorySessionStore, SessionRecord, SessionStore, new_session_id

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
# Methods that run user code or stream: on modern requests a closed stream cancels them.
_USER_CODE = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete", "subscriptions/listen"})


async def _wait_for_disconnect(receive: Receive) -> bool:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True


def _header_mismatch(message: str) -> MCPError:
    return MCPError(HEADER_MISMATCH, f"Header mismatch: {message}", http_status=400)


class _Reply:
    """Answers one POSTed request: JSON by default, SSE from the first early message on."""

    __slots__ = ("send", "headers", "allow_sse", "started", "closed")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]], allow_sse: bool) -> None:
        self.send = send
        self.headers = headers
        self.allow_sse = allow_sse
        self.started = False
        self.closed = False

    async def early(self, message: dict[str, Any] | None) -> bool:
        """Send a message before the result (None: a keep-alive); False if this reply cannot carry it."""
        if not self.allow_sse or self.closed:
            return False
        if message is None:
            if self.started:
                await self.send({"type": "http.response.body", "body": SSE_KEEPALIVE, "more_body": True})
            return True
        if not self.started:
            self.started = True
            await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self.headers})
        await self.send({"type": "http.response.body", "body": sse_event(message), "more_body": True})
        return True

    async def finish(self, message: dict[str, Any] | None, status: int = 200) -> None:
        if self.closed:
            return
        self.closed = True
        if self.started:
            body = sse_event(message) if message is not None else b""
            await self.send({"type": "http.response.body", "body": body, "more_body": False})
        elif message is None:
            await send_bytes(self.send, 202, b"", self.headers)
        else:
            await send_bytes(self.send, status, encode(message), self.headers)


class StreamableHTTPEndpoint:
    """The ASGI endpoint behind `mcp.http_app()`."""

    def __init__(
        self,
        server: MCPServer,
        *,
        json_response: bool = False,
        stateless: bool = False,
        session_store: SessionStore | None = None,
        broker: InProcessBroker | None = None,
        keepalive_interval: float = 15.0,
        max_body_size: int = 4 * 1024 * 1024,
        client_request_timeout: float = 300.0,
        guard: HostOriginGuard | None = None,
        event_store: EventStore | None = None,
        sse_retry_interval: float = 1.0,
    ) -> None:
        if sse_retry_interval < 0:
            raise ValueError(f"`sse_retry_interval` must be >= 0 seconds; got {sse_retry_interval!r}")
        self.server = server
        self.guard = guard
        self.json_response = json_response
        self.stateless = stateless
        self.sessions: SessionStore = session_store if session_store is not None else InMemorySessionStore()
        self.broker = broker if broker is not None else InProcessBroker()
        self.keepalive_interval = keepalive_interval
        self.max_body_size = max_body_size
        # In-flight legacy requests by (session, request id), for notifications/cancelled.
        self._in_flight: dict[tuple[str, Any], anyio.CancelScope] = {}
        # Server-to-client requests awaiting the client's answer, by (session, request id).
        self.pending = PendingRequests(timeout=client_request_timeout)
        # 2025-11-25 sessions: SSE replies are resumable from here, and clients reconnect after this long.
        self.events: EventStore = event_store if event_store is not None else InMemoryEventStore()
        self.sse_retry_ms = round(sse_retry_interval * 1000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        refused = self.guard.check(scope, headers) if self.guard is not None else None
        if refused is not None:
            await send_error(send, refused)
            return
        method = scope["method"]
        if method == "POST":
            await self._post(scope, receive, send, headers)
        elif method == "GET":
            await self._get(scope, receive, send, headers)
        elif method == "DELETE":
            await self._delete(send, headers)
        else:
            error = MCPError(INVALID_REQUEST, f"Method {method} not allowed on the MCP endpoint", http_status=405)
            await send_error(send, error, headers=[(b"allow", b"GET, POST, DELETE")])

    # POST: every JSON-RPC message.
    async def _post(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        message: Any = None
        try:
            if not is_json_content_type(headers.get("content-type")):
                raise MCPError(
                    INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json", http_status=415
                )
            accept = headers.get("accept")
            if not accepts(accept, "application/json") or (
                not self.json_response and not accepts(accept, "text/event-stream")
            ):
                raise MCPError(
                    INVALID_REQUEST,
                    "Not Acceptable: the Accept header must list application/json and text/event-stream",
                    http_status=406,
                )
            body = await read_body(receive, self.max_body_size, headers.get("content-length"))
            message = decode(body)
            kind = classify(message)
            await self.server.ensure_started(scope)
            header_version = headers.get(VERSION_HEADER)
            if header_version is not None and header_version not in SUPPORTED_VERSIONS:
                raise unsupported_version(header_version)
            params = message.get("params") or {}
            meta = params.get("_meta")
            modern = header_version in MODERN_VERSIONS or (
                header_version is None
                and kind != RESPONSE
                and isinstance(meta, dict)
                and "io.modelcontextprotocol/protocolVersion" in meta
            )
            # An `initialize` that declares the modern revision is just an unknown method (404).
            if modern:
                await self._modern(scope, receive, send, headers, message, kind, params)
            else:
                await self._legacy(scope, receive, send, headers, message, kind, params)
        except MCPError as error:
            await send_error(send, error, request_id_of(message))
        except ConnectionAbortedError:
            return

    async def _modern(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        message: dict[str, Any],
        kind: str,
        params: dict[str, Any],
    ) -> None:
        if kind == RESPONSE:
            raise MCPError(INVALID_REQUEST, "Invalid Request: clients do not send responses", http_status=400)
        if kind == NOTIFICATION:
            # 2026-07-28 defines no client notifications over HTTP; accept and ignore them.
            await send_bytes(send, 202, b"")
            return
        method = message["method"]
        meta = params.get("_meta")
        meta_version = meta.get("io.modelcontextprotocol/protocolVersion") if isinstance(meta, dict) else None
        header_version = headers.get(VERSION_HEADER)
        if meta_version is not None:
            if header_version is None:
                raise _header_mismatch("the MCP-Protocol-Version header is required")
            if header_version != meta_version:
                raise _header_mismatch(
                    f"MCP-Protocol-Version header {header_version!r} does not match _meta protocolVersion "
                    f"{meta_version!r}"
                )
        revision = read_modern_meta(params)
        mcp_method = headers.get("mcp-method")
        if mcp_method is None:
            raise _header_mismatch("the Mcp-Method header is required")
        if mcp_method != method:
            raise _header_mismatch(f"Mcp-Method header {mcp_method!r} does not match body method {method!r}")
        named = NAMED_METHODS.get(method)
        if named is not None:
            raw_name = headers.get("mcp-name")
            if raw_name is None:
                raise _header_mismatch(f"the Mcp-Name header is required for {method}")
            name = decode_header_value(raw_name.strip())
            if name is None:
                raise _header_mismatch("the Mcp-Name header has a malformed base64 value")
            if name != params.get(named):
                raise _header_mismatch(
                    f"Mcp-Name header value {name!r} does not match body value {params.get(named)!r}"
                )
            if method == "tools/call":
                tool = self.server._registry.get("tools", name)
                if tool is not None and tool.param_headers:
                    validate_param_headers(tool.param_headers, params.get("arguments"), headers)
        self.server._core.require_known(revision, method)
        reply = _Reply(send, [], allow_sse=not self.json_response)
        call = build_call(
            message,
            revision,
            request=Request(scope, receive),
            host_app=scope.get("mcp_asgi.host_app"),
            send=reply.early,
        )
        if method in _USER_CODE:
            await self._run_cancellable(call, reply, receive)
        else:
            await self._run(call, reply)

    async def _run(self, call: Call, reply: _Reply | ResumableReply) -> None:
        try:
            result = await self.server._core.handle(call)
        except MCPError as error:
            status = error.http_status if error.http_status >= 400 else 200
            await reply.finish(error_response(call.request_id, error), status)
            return
        await reply.finish(result_response(call.request_id, result))

    async def _run_cancellable(self, call: Call, reply: _Reply, receive: Receive) -> None:
        """Run the call; the client closing its connection cancels it (the 2026 cancellation rule).

        A plain asyncio task watches for the disconnect: an anyio task group per
        call cost more than half the throughput of a trivial tool call.
        """
        with anyio.CancelScope() as cancel_scope:
            watcher = asyncio.ensure_future(_wait_for_disconnect(receive))

            def on_disconnect(task: asyncio.Future[bool]) -> None:
                if not task.cancelled() and task.exception() is None and task.result():
                    reply.closed = True
                    cancel_scope.cancel()

            watcher.add_done_callback(on_disconnect)
            try:
                await self._run(call, reply)
            finally:
                watcher.remove_done_callback(on_disconnect)
                watcher.cancel()

    async def _legacy(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        message: dict[str, Any],
        kind: str,
        params: dict[str, Any],
    ) -> None:
        method = message.get("method")
        header_version = headers.get(VERSION_HEADER)
        if kind == REQUEST and method == "initialize":
            await self._initialize(scope, receive, send, message, params)
            return
        session: SessionRecord | None = None
        session_headers: list[tuple[bytes, bytes]] = []
        if self.stateless:
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
            session = await self.sessions.get(session_id)
            if session is None:
                raise MCPError(INVALID_REQUEST, "Session not found: it ended or never existed", http_status=404)
            version = session.protocol_version or header_version or "2025-03-26"
            session_headers = [(b"mcp-session-id", session_id.encode())]
        revision = REVISIONS[version]
        if header_version is not None and header_version not in LEGACY_VERSIONS:
            raise unsupported_version(header_version)
        if kind == NOTIFICATION:
            await self._legacy_notification(session, method, params)
            await send_bytes(send, 202, b"", session_headers)
            return
        if kind == RESPONSE:
            self.pending.answer(session.session_id if session is not None else None, message)
            await send_bytes(send, 202, b"", session_headers)
            return
        reply: _Reply | ResumableReply
        close_stream = None
        if session is not None and revision.sse_event_ids:
            reply = ResumableReply(
                send, session_headers, not self.json_response, self.events, session.session_id, self.sse_retry_ms
            )
            close_stream = reply.close
        else:
            reply = _Reply(send, session_headers, allow_sse=not self.json_response)

        async def request_client(method: str, params: dict[str, Any]) -> Any:
            return await self._request_client(session, reply, method, params)

        call = build_call(
            message,
            revision,
            session=session,
            request=Request(scope, receive),
            host_app=scope.get("mcp_asgi.host_app"),
            send=reply.early,
            request_client=request_client,
            close_stream=close_stream,
        )
        key = (session.session_id, call.request_id) if session is not None else None
        with anyio.CancelScope() as scope_:
            if key is not None:
                self._in_flight[key] = scope_
            try:
                await self._run(call, reply)
            finally:
                if key is not None:
                    self._in_flight.pop(key, None)
        if scope_.cancelled_caught:
            # notifications/cancelled: the client expects no response; end the HTTP exchange quietly.
            await reply.finish(None)
        if session is not None and call.state.session_changed:
            await self.sessions.save(session)

    async def _request_client(
        self, session: SessionRecord | None, reply: _Reply | ResumableReply, method: str, params: dict[str, Any]
    ) -> Any:
        """Send a request to the client on the call's stream (or the GET stream) and await its answer."""
        session_id = session.session_id if session is not None else None

        async def deliver(message: dict[str, Any]) -> None:
            if await reply.early(message):
                return
            if session_id is None or not await self.broker.publish(session_id, message):
                raise MCPError(
                    INVALID_REQUEST,
                    f"Cannot send {method} to the client: this reply is JSON (json_response=True) "
                    "and the session has no open GET stream",
                )

        return await self.pending.ask(session_id, method, params, deliver)

    async def _initialize(
        self, scope: Scope, receive: Receive, send: Send, message: dict[str, Any], params: dict[str, Any]
    ) -> None:
        session = None if self.stateless else SessionRecord(session_id=new_session_id())
        call = build_call(
            message,
            REVISIONS["2025-03-26"],
            session=session,
            request=Request(scope, receive),
            host_app=scope.get("mcp_asgi.host_app"),
        )
        result = await self.server._core.handle(call)
        extra: list[tuple[bytes, bytes]] = []
        if session is not None:
            await self.sessions.create(session)
            extra.append((b"mcp-session-id", session.session_id.encode()))
        await send_bytes(send, 200, encode(result_response(call.request_id, result)), extra)

    async def _legacy_notification(self, session: SessionRecord | None, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/initialized":
            if session is not None and not session.initialized:
                session.initialized = True
                await self.sessions.save(session)
        elif method == "notifications/cancelled" and session is not None:
            scope = self._in_flight.get((session.session_id, params.get("requestId")))
            if scope is not None:
                scope.cancel()

    # GET: the session's stream of server-initiated messages (2025 revisions only).
    async def _get(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        try:
            if self.stateless or headers.get(VERSION_HEADER) in MODERN_VERSIONS:
                raise MCPError(INVALID_REQUEST, "Method Not Allowed: this endpoint has no GET stream", http_status=405)
            if not accepts(headers.get("accept"), "text/event-stream"):
                raise MCPError(
                    INVALID_REQUEST, "Not Acceptable: the Accept header must list text/event-stream", http_status=406
                )
            session_id = headers.get(SESSION_HEADER)
            if session_id is None:
                raise MCPError(INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header", http_status=400)
            record = await self.sessions.get(session_id)
            if record is None:
                raise MCPError(INVALID_REQUEST, "Session not found: it ended or never existed", http_status=404)
            last_event_id = headers.get("last-event-id")
            revision = REVISIONS.get(record.protocol_version or "")
            if last_event_id is not None and revision is not None and revision.sse_event_ids:
                # A resumption, not the session's standalone stream: no broker, no 409.
                if await resume_stream(
                    self.events,
                    session_id,
                    last_event_id,
                    receive,
                    send,
                    keepalive_interval=self.keepalive_interval,
                    retry_ms=self.sse_retry_ms,
                ):
                    return
                # Not 404: with a session id that tells the client its session is gone (it must start
                # a new one), yet only this stream is. Nor the standalone stream in its place, which
                # would never carry the response the client waits for. The event id is what is bad.
                raise MCPError(
                    INVALID_REQUEST,
                    "Bad Request: Last-Event-ID names no stream this session can resume "
                    "(unknown, or its events expired)",
                    http_status=400,
                )
            try:
                stream = self.broker.listen(session_id)
            except LookupError:
                raise MCPError(
                    INVALID_REQUEST, "Conflict: this session already has an open GET stream", http_status=409
                ) from None
        except MCPError as error:
            extra = [(b"allow", b"POST")] if error.http_status == 405 else None
            await send_error(send, error, headers=extra)
            return
        changes, stop_changes = self.server._hub.listen(partial(session_change, record.subscriptions))
        lock = anyio.Lock()

        async def emit(body: bytes) -> None:
            async with lock:
                await send({"type": "http.response.body", "body": body, "more_body": True})

        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": SSE_HEADERS + [(b"mcp-session-id", session_id.encode())],
                }
            )
            await emit(b": stream open\n\n")
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                async def forward_changes() -> None:
                    async for change in changes:
                        await emit(sse_event(change))
                    group.cancel_scope.cancel()  # the server is shutting down

                group.start_soon(watch)
                group.start_soon(forward_changes)
                while True:
                    with anyio.move_on_after(self.keepalive_interval):
                        try:
                            item = await stream.receive()
                        except (anyio.EndOfStream, anyio.ClosedResourceError):
                            break
                        await emit(sse_event(item))
                        continue
                    await emit(SSE_KEEPALIVE)
                group.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass
        finally:
            stop_changes()
            self.broker.unlisten(session_id, stream)

    # DELETE: the client ends its session.
    async def _delete(self, send: Send, headers: dict[str, str]) -> None:
        try:
            if self.stateless or headers.get(VERSION_HEADER) in MODERN_VERSIONS:
                raise MCPError(INVALID_REQUEST, "Method Not Allowed: this endpoint has no sessions", http_status=405)
            session_id = headers.get(SESSION_HEADER)
            if session_id is None:
                raise MCPError(INVALID_REQUEST, "Bad Request: missing Mcp-Session-Id header", http_status=400)
            if not await self.sessions.delete(session_id):
                raise MCPError(INVALID_REQUEST, "Session not found: it ended or never existed", http_status=404)
        except MCPError as error:
            extra = [(b"allow", b"POST")] if error.http_status == 405 else None
            await send_error(send, error, headers=extra)
            return
        self.broker.close(session_id)
        await self.events.forget_session(session_id)
        await send_bytes(send, 200, b"")
