"""One JSON-RPC conversation over a single channel: what stdio and legacy SSE share.

Both transports carry every message of one client over one ordered channel, with
no per-request stream. A `Conversation` takes each decoded message, answers
requests concurrently in a task group the transport owns (a slow tool never
blocks `ping` or `notifications/cancelled`), and hands every outgoing message to
one `write` callable, which the transport serializes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from mcp_asgi.protocol.dispatch import META_VERSION, Call, Send, SessionChanges, build_call, read_modern_meta
from mcp_asgi.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    NOTIFICATION,
    RESPONSE,
    MCPError,
    RequestId,
    classify,
    error_response,
    request_id_of,
    result_response,
)
from mcp_asgi.protocol.notifications import session_change
from mcp_asgi.protocol.pending import PendingRequests
from mcp_asgi.protocol.versions import LATEST_LEGACY, REVISIONS, Revision, negotiate
from mcp_asgi.transports.sessions import SERVER_BUSY, SessionRecord

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from starlette.requests import Request

    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")

Write = Callable[[dict[str, Any]], Awaitable[None]]

# Requests one session (or channel) may have running at once: each holds its params and a task.
DEFAULT_MAX_IN_FLIGHT = 64


def check_max_in_flight(value: Any) -> int:
    """`max_in_flight` as given, or a ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`max_in_flight` must be a positive number of requests; got {value!r}")
    return value


def too_many_in_flight(limit: int, http_status: int | None = None) -> MCPError:
    """The refusal of a request past the in-flight limit; the calls already running go on."""
    return MCPError(
        SERVER_BUSY,
        f"Server busy: this session already has {limit} requests in flight, the most allowed; "
        "wait for some to finish, then retry",
        http_status=http_status,
    )


def is_modern(params: dict[str, Any]) -> bool:
    """A request that declares its revision in `_meta` is served statelessly (2026-07-28)."""
    meta = params.get("_meta")
    return isinstance(meta, dict) and META_VERSION in meta


class Conversation:
    """Answers the messages of one client arriving over one channel."""

    def __init__(
        self,
        server: MCPServer,
        write: Write,
        task_group: TaskGroup,
        *,
        session: SessionRecord | None = None,
        allow_modern: bool = True,
        default_version: str | None = None,
        sessions: SessionChanges | None = None,
        host_app: Any = None,
        request: Request | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.server = server
        self.write = write
        self.task_group = task_group
        # The legacy session this channel carries; stdio creates it on `initialize`.
        self.session = session
        self.allow_modern = allow_modern
        # The revision assumed for legacy requests before `initialize` (None: refuse them).
        self.default_version = default_version
        # The store `session` lives in (legacy SSE); None when the channel's record is its own (stdio).
        self.sessions = sessions
        self.host_app = host_app
        # The HTTP request that opened the channel (the SSE GET), for `ctx.request`.
        self.request = request
        self._in_flight: dict[RequestId, anyio.CancelScope] = {}
        self.max_in_flight = check_max_in_flight(max_in_flight)
        # Requests admitted by `reserve` (legacy SSE: their POST got 202) that have not arrived yet.
        self._reserved = 0
        # Requests this server sent the client (2025 sessions), awaiting its answers.
        self.pending = PendingRequests()
        self._stop_changes: Callable[[], None] | None = None

    async def receive(self, message: Any) -> None:
        """Take one decoded message: answer notifications now, start a task for a request."""
        try:
            kind = classify(message)
        except MCPError as error:
            await self.write(error_response(request_id_of(message), error))
            return
        if kind == RESPONSE:
            self.pending.answer(None, message)
            return
        params = message.get("params") or {}
        if kind == NOTIFICATION:
            await self._notification(message["method"], params)
            return
        request_id = message["id"]
        if self._reserved:
            self._reserved -= 1  # this is one of them: its slot is counted below like any running call
        if request_id in self._in_flight:
            error = MCPError(INVALID_REQUEST, f"Invalid Request: request id {request_id!r} is already in flight")
            await self.write(error_response(request_id, error))
            return
        if len(self._in_flight) + self._reserved >= self.max_in_flight:
            await self.write(error_response(request_id, too_many_in_flight(self.max_in_flight)))
            return
        cancel_scope = anyio.CancelScope()
        self._in_flight[request_id] = cancel_scope
        self.task_group.start_soon(self._answer, message, cancel_scope)

    def reserve(self) -> None:
        """Admit a request that will arrive through `receive` later; 503 (-32000) if no slot is free.

        Legacy SSE answers each POST before its request reaches the stream: the slot is
        taken here, so a client at the limit is told by its POST, not later on the stream.
        """
        if len(self._in_flight) + self._reserved >= self.max_in_flight:
            raise too_many_in_flight(self.max_in_flight, http_status=503)
        self._reserved += 1

    def release(self) -> None:
        """Give back a slot `reserve` took for a request that will not arrive after all."""
        self._reserved = max(0, self._reserved - 1)

    async def _notification(self, method: str, params: dict[str, Any]) -> None:
        if method == "notifications/cancelled":
            request_id = params.get("requestId")
            # A client's id of any other type (a list, an object) names no request: ignore it.
            if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
                scope = self._in_flight.get(request_id)
                if scope is not None:
                    scope.cancel()
        elif method == "notifications/initialized" and self.session is not None:
            if not self.session.initialized:
                self.session.initialized = True
                if self.sessions is not None:
                    await self.sessions.update(self.session.session_id, initialized=True)

    async def _answer(self, message: dict[str, Any], scope: anyio.CancelScope) -> None:
        method, request_id = message["method"], message["id"]
        reply: dict[str, Any] | None = None
        with scope:
            try:

                async def send(early: dict[str, Any] | None) -> bool:
                    # A cancelled request sends nothing more (the cancellation rule); None is a
                    # keep-alive, which a channel that stays open needs not.
                    if early is not None and not scope.cancel_called:
                        await self.write(early)
                    return True

                call = self._call(message, send)
                result = await self.server._core.handle(call)
                if method == "initialize" and call.session is not None:
                    self._follow_changes(call.session)
                reply = result_response(request_id, result)
            except MCPError as error:
                reply = error_response(request_id, error)
            except Exception:  # the core already maps user errors; this is a bug of ours
                logger.exception("Answering %s failed", method)
                reply = error_response(request_id, MCPError(INTERNAL_ERROR, "Internal error"))
        self._in_flight.pop(request_id, None)
        if reply is not None and not scope.cancel_called:
            await self.write(reply)

    def _call(self, message: dict[str, Any], send: Send) -> Call:
        params = message.get("params") or {}
        if self.allow_modern and is_modern(params):
            return build_call(
                message, read_modern_meta(params), request=self.request, host_app=self.host_app, send=send
            )
        if message["method"] == "initialize":
            if self.session is None:
                self.session = SessionRecord(session_id="stdio")
            # The handler negotiates and records the version; any legacy revision lets it run.
            revision = REVISIONS[LATEST_LEGACY]
        else:
            revision = self._legacy_revision(message["method"])
        return build_call(
            message,
            revision,
            session=self.session,
            sessions=self.sessions,
            request=self.request,
            host_app=self.host_app,
            send=send,
            request_client=self._request_client if self.session is not None else None,
        )

    def _legacy_revision(self, method: str) -> Revision:
        session = self.session
        version = session.protocol_version if session is not None else None
        if version is not None:
            return REVISIONS[version]
        if self.default_version is not None:
            return negotiate(self.default_version)
        if method == "ping":
            return REVISIONS[LATEST_LEGACY]
        raise MCPError(
            INVALID_REQUEST,
            f"Invalid Request: send `initialize` first, or carry `_meta` with {META_VERSION} "
            f"(the 2026-07-28 revision needs no handshake)",
        )

    def stop_following(self) -> None:
        """Stop sending change notifications (the channel's input ended)."""
        if self._stop_changes is not None:
            self._stop_changes()
            self._stop_changes = None

    async def _request_client(self, method: str, params: dict[str, Any]) -> Any:
        """Send a request to the client over the channel and await its answer (2025 sessions)."""
        return await self.pending.ask(None, method, params, self.write)

    def _follow_changes(self, session: SessionRecord) -> None:
        """After `initialize`: send this session's list changes and subscribed updates down the channel."""
        if self._stop_changes is not None:
            return
        changes, self._stop_changes = self.server._hub.listen(partial(session_change, session.subscriptions))

        async def forward() -> None:
            async with changes:
                async for change in changes:
                    await self.write(change)

        self.task_group.start_soon(forward)
