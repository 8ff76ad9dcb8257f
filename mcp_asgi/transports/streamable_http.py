"""The Streamable HTTP transport: one endpoint serving every protocol revision.

This module checks what every POST shares (media types, body, JSON-RPC shape,
the version header) and routes by protocol generation:

- `modern_http.py`: a request carrying modern `_meta` (2026-07-28), served statelessly;
- `session_http.py`: the 2025 revisions, where `initialize` starts a session that later
  requests carry, with its GET stream and DELETE.

Either way one `Call` is built (`protocol.dispatch.build_call`) and answered by the
protocol core into a reply that is JSON unless something streams (`http_reply.py`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from mcp_asgi.asgi.security import HostOriginGuard
from mcp_asgi.backend import Backend, InMemoryBackend
from mcp_asgi.protocol.dispatch import META_VERSION, unsupported_version
from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, RESPONSE, MCPError, classify, decode, request_id_of
from mcp_asgi.protocol.pending import PendingRequests
from mcp_asgi.protocol.versions import MODERN_VERSIONS, SUPPORTED_VERSIONS
from mcp_asgi.transports.broker import InProcessBroker
from mcp_asgi.transports.conversation import DEFAULT_MAX_IN_FLIGHT
from mcp_asgi.transports.events import EventStore
from mcp_asgi.transports.http_common import (
    BODY_TIMEOUT,
    accepts,
    header_map,
    is_json_content_type,
    read_body,
    send_error,
)
from mcp_asgi.transports.modern_http import serve_modern
from mcp_asgi.transports.session_http import (
    VERSION_HEADER,
    InFlightCalls,
    serve_delete,
    serve_get,
    serve_session_post,
)
from mcp_asgi.transports.session_relay import SessionRelay
from mcp_asgi.transports.sessions import SessionStore

if TYPE_CHECKING:
    from mcp_asgi.auth.bearer import AuthGate
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")


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
        body_timeout: float = BODY_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        backend: Backend | None = None,
    ) -> None:
        if sse_retry_interval < 0:
            raise ValueError(f"`sse_retry_interval` must be >= 0 seconds; got {sse_retry_interval!r}")
        if body_timeout <= 0:
            raise ValueError(f"`body_timeout` must be a positive number of seconds; got {body_timeout!r}")
        self.body_timeout = body_timeout
        self.server = server
        self.guard = guard
        self.json_response = json_response
        self.stateless = stateless
        if backend is None:
            backend = InMemoryBackend(sessions=session_store, events=event_store)
        elif session_store is not None or event_store is not None:
            raise ValueError("pass `backend=` or `session_store=`/`event_store=`, not both (the backend has its own)")
        # Sessions, resumable events and the bus to the other workers.
        self.backend: Backend = backend
        self.sessions: SessionStore = backend.sessions
        self.broker = broker if broker is not None else InProcessBroker()
        self.keepalive_interval = keepalive_interval
        self.max_body_size = max_body_size
        # Calls of 2025 sessions still running, for notifications/cancelled and DELETE.
        self.in_flight = InFlightCalls(max_in_flight)
        # Server-to-client requests awaiting the client's answer, by (session, request id).
        self.pending = PendingRequests(timeout=client_request_timeout, worker_id=backend.worker_id)
        # What other workers must hear of this worker's sessions, and what this one hears of theirs.
        self.relay = SessionRelay(self)
        # 2025-11-25 sessions: SSE replies are resumable from here, and clients reconnect after this long.
        self.events: EventStore = backend.events
        self.sse_retry_ms = round(sse_retry_interval * 1000)
        # `auth=` of the app: checked after the Host/Origin guard, before anything of the request runs.
        self.gate: AuthGate | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        refused = self.guard.check(scope, headers) if self.guard is not None else None
        if refused is not None:
            await send_error(send, refused)
            return
        if self.gate is not None and not await self.gate.admit(scope, send):
            return
        method = scope["method"]
        if method in ("GET", "DELETE"):
            try:
                await self.server.ensure_started(scope)
            except MCPError as error:
                await send_error(send, error)
                return
        if method == "POST":
            await self._post(scope, receive, send, headers)
        elif method == "GET":
            await serve_get(self, scope, receive, send, headers)
        elif method == "DELETE":
            await serve_delete(self, scope, send, headers)
        else:
            error = MCPError(INVALID_REQUEST, f"Method {method} not allowed on the MCP endpoint", http_status=405)
            await send_error(send, error, headers=[(b"allow", b"GET, POST, DELETE")])

    # POST: every JSON-RPC message.
    async def _post(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        message: Any = None
        try:
            self._check_media_types(headers)
            body = await read_body(receive, self.max_body_size, headers.get("content-length"), self.body_timeout)
            message = decode(body)
            kind = classify(message)
            await self.server.ensure_started(scope)
            header_version = headers.get(VERSION_HEADER)
            if header_version is not None and header_version not in SUPPORTED_VERSIONS:
                raise unsupported_version(header_version)
            meta = (message.get("params") or {}).get("_meta")
            modern = header_version in MODERN_VERSIONS or (
                header_version is None and kind != RESPONSE and isinstance(meta, dict) and META_VERSION in meta
            )
            request = _request_with_body(scope, receive, body)
            # An `initialize` that declares the modern revision is just an unknown method (404).
            if modern:
                await serve_modern(self, request, send, headers, message, kind)
            else:
                await serve_session_post(self, request, send, headers, message, kind)
        except MCPError as error:
            await send_error(send, error, request_id_of(message))
        except ConnectionAbortedError:
            return

    def _check_media_types(self, headers: dict[str, str]) -> None:
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


def _request_with_body(scope: Scope, receive: Receive, body: bytes) -> Request:
    """The `Request` tools see as `ctx.request`; its body was read here, so it carries it."""
    request = Request(scope, receive)
    # Starlette keeps a read body in `_body`; without it `await request.body()` would wait forever.
    request._body = body
    return request
