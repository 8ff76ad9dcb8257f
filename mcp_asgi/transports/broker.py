"""Delivery of messages that outlive one request (the 2025 GET stream, the legacy SSE inbox).

In-process for now: a stream registers an inbox under its session id; anything
published for that session goes to the inbox. A Redis broker can replace it
behind the same methods.

Bounded by default: a stream that is not read holds at most `buffer` messages
and `max_bytes` bytes, and all inboxes together at most `max_total_bytes`; past
that, `publish` refuses (returns False) and the caller answers 503 or fails the
one message, while every other stream goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from mcp_asgi.protocol.jsonrpc import encode

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

_Item = tuple[dict[str, Any], int]


class Inbox:
    """The receiving end of one session's stream; what it holds counts against the broker's budget."""

    __slots__ = ("_broker", "_send", "_receive", "queued_bytes")

    def __init__(
        self, broker: InProcessBroker, send: MemoryObjectSendStream[_Item], receive: MemoryObjectReceiveStream[_Item]
    ) -> None:
        self._broker = broker
        self._send = send
        self._receive = receive
        self.queued_bytes = 0

    async def receive(self) -> dict[str, Any]:
        """The next message; raises `anyio.EndOfStream` once the stream was ended and drained."""
        message, size = await self._receive.receive()
        self._release(size)
        return message

    def offer(self, message: dict[str, Any], size: int) -> bool:
        try:
            self._send.send_nowait((message, size))
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        self.queued_bytes += size
        self._broker.queued_bytes += size
        return True

    def end(self) -> None:
        """No more messages; the reader gets what is queued, then `EndOfStream`."""
        self._send.close()

    def close(self) -> None:
        """Stop reading: what is still queued is dropped and its bytes returned to the budget."""
        self._send.close()
        self._receive.close()
        self._release(self.queued_bytes)

    def _release(self, size: int) -> None:
        self.queued_bytes -= size
        self._broker.queued_bytes -= size


class InProcessBroker:
    """Per-session inboxes in this process, bounded in messages and bytes."""

    def __init__(
        self, *, buffer: int = 256, max_bytes: int = 8 * 1024 * 1024, max_total_bytes: int = 256 * 1024 * 1024
    ) -> None:
        if buffer < 1:
            raise ValueError("`buffer` must be at least 1 message")
        if max_bytes < 1 or max_total_bytes < 1:
            raise ValueError("`max_bytes` and `max_total_bytes` must be at least 1 byte")
        self.buffer = buffer
        self.max_bytes = max_bytes
        self.max_total_bytes = max_total_bytes
        # Bytes waiting in every inbox (their JSON size).
        self.queued_bytes = 0
        self._inboxes: dict[str, Inbox] = {}

    def has_listener(self, session_id: str) -> bool:
        return session_id in self._inboxes

    def listen(self, session_id: str) -> Inbox:
        """Register the one stream of a session; raises LookupError if one is open."""
        if session_id in self._inboxes:
            raise LookupError(session_id)
        send, receive = anyio.create_memory_object_stream[_Item](self.buffer)
        inbox = self._inboxes[session_id] = Inbox(self, send, receive)
        return inbox

    def unlisten(self, session_id: str, inbox: Inbox) -> None:
        # Only this inbox: the session may have opened a new stream since this one was ended.
        if self._inboxes.get(session_id) is inbox:
            del self._inboxes[session_id]
        inbox.close()

    async def publish(self, session_id: str, message: dict[str, Any], *, size: int | None = None) -> bool:
        """Queue a message for the session's stream; False if nobody listens or it is full.

        `size` is the message's JSON size when the caller knows it (it read the body).
        One message larger than the limits still goes through to an empty inbox, so a
        big message is slow, never stuck.
        """
        inbox = self._inboxes.get(session_id)
        if inbox is None:
            return False
        if size is None:
            size = len(encode(message))
        if inbox.queued_bytes and inbox.queued_bytes + size > self.max_bytes:
            return False
        if self.queued_bytes and self.queued_bytes + size > self.max_total_bytes:
            return False
        return inbox.offer(message, size)

    def close(self, session_id: str) -> None:
        """End the session's stream (the session was deleted)."""
        inbox = self._inboxes.pop(session_id, None)
        if inbox is not None:
            inbox.end()

    def close_all(self) -> None:
        """End every open stream: the server is shutting down and must not wait for them."""
        inboxes, self._inboxes = self._inboxes, {}
        for inbox in inboxes.values():
            inbox.end()
