"""How one POSTed request is answered on Streamable HTTP, whatever its revision.

The reply is JSON unless something is sent before the result (progress, logs, a
request to the client), in which case it turns into an SSE stream at that moment:
plain calls pay for no stream and no task.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.types import Send

from mcp_asgi import shutdown
from mcp_asgi.protocol.dispatch import Call, ProtocolCore
from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR, MCPError, encode, error_response, result_response
from mcp_asgi.transports.http_common import SSE_HEADERS, SSE_KEEPALIVE, error_headers, send_bytes, sse_event
from mcp_asgi.transports.sse_writes import CoalescedWrites


class Reply(Protocol):
    """What `answer` needs of a reply: `JSONOrSSEReply`, or `events.ResumableReply` on 2025-11-25."""

    # Sent with the response when it starts; an error adds its own (a 403's WWW-Authenticate).
    headers: list[tuple[bytes, bytes]]

    async def early(self, message: dict[str, Any] | None) -> bool: ...

    async def finish(self, message: dict[str, Any] | None, status: int = 200) -> None: ...


class JSONOrSSEReply(CoalescedWrites):
    """Answers one POSTed request: JSON by default, SSE from the first early message on.

    Early messages wait for the loop's next turn before they are written (`CoalescedWrites`):
    a call that finishes first (a tool sending one progress notification) goes out as the head
    and one body write; a call that waits has its messages written as soon as it waits.
    """

    __slots__ = ("headers", "allow_sse", "started", "closed")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]], allow_sse: bool) -> None:
        super().__init__(send)
        self.headers = headers
        self.allow_sse = allow_sse
        self.started = False
        self.closed = False

    def _stopped(self) -> bool:
        return self.closed

    def abandon(self) -> None:
        """The client went away: write nothing more."""
        self.closed = True

    async def early(self, message: dict[str, Any] | None) -> bool:
        """Send a message before the result (None: a keep-alive); False if this reply cannot carry it."""
        if not self.allow_sse or self.closed:
            return False
        if message is None:
            if self.started:
                async with self._locked():
                    if not self.closed:
                        await self._write(SSE_KEEPALIVE, more=True)
            return True
        if not self.started:
            self.started = True
            self._head = SSE_HEADERS + self.headers
        self._later(sse_event(message))
        return True

    async def finish(self, message: dict[str, Any] | None, status: int = 200) -> None:
        if self.closed:
            return
        self.closed = True
        if self.started:
            async with self._locked():
                await self._write(sse_event(message) if message is not None else b"", more=False)
        elif message is None:
            await send_bytes(self.send, 202, b"", self.headers)
        else:
            await send_bytes(self.send, status, encode(message), self.headers)


# Calls that run user code or stream; the rest answer at once and need no graceful period.
_LONG_RUNNING = frozenset(
    {"tools/call", "prompts/get", "resources/read", "completion/complete", "subscriptions/listen"}
)


def shutting_down() -> MCPError:
    """The error a call gets when the host's shutdown cut it after its graceful period."""
    return MCPError(INTERNAL_ERROR, "Server shutting down", http_status=503)


async def answer(core: ProtocolCore, call: Call, reply: Reply) -> None:
    """Run the call through the core and finish the reply with its result or error."""
    try:
        if call.method in _LONG_RUNNING:
            # Shutdown gives the call its graceful period, then a JSON-RPC error (not uvicorn's 500).
            with shutdown.state().grace() as grace:
                result = await core.handle(call)
            if grace.cut:
                raise shutting_down()
        else:
            result = await core.handle(call)
    except MCPError as error:
        status = error.http_status if error.http_status >= 400 else 200
        if error.headers:
            # Used only if the reply is still JSON; an SSE reply already sent its headers.
            reply.headers = [*reply.headers, *error_headers(error)]
        await reply.finish(error_response(call.request_id, error), status)
        return
    await reply.finish(result_response(call.request_id, result))
