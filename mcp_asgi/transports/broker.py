"""Delivery of server-to-client messages that outlive one request (the GET stream).

In-process for now: a stream registers a queue under its session id; anything
published for that session goes to the queue. A Redis broker can replace it
behind the same three methods.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


class InProcessBroker:
    def __init__(self, *, buffer: int = 256) -> None:
        self._buffer = buffer
        self._streams: dict[str, MemoryObjectSendStream[dict[str, Any] | None]] = {}

    def has_listener(self, session_id: str) -> bool:
        return session_id in self._streams

    def listen(self, session_id: str) -> MemoryObjectReceiveStream[dict[str, Any] | None]:
        """Register the one GET stream of a session; raises LookupError if one is open."""
        if session_id in self._streams:
            raise LookupError(session_id)
        send, receive = anyio.create_memory_object_stream[dict[str, Any] | None](self._buffer or math.inf)
        self._streams[session_id] = send
        return receive

    def unlisten(self, session_id: str, receive: MemoryObjectReceiveStream[Any]) -> None:
        send = self._streams.get(session_id)
        if send is not None:
            del self._streams[session_id]
            send.close()
        receive.close()

    async def publish(self, session_id: str, message: dict[str, Any]) -> bool:
        """Queue a message for the session's GET stream; False if nobody listens."""
        send = self._streams.get(session_id)
        if send is None:
            return False
        try:
            send.send_nowait(message)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    def close(self, session_id: str) -> None:
        """End the session's GET stream (the session was deleted)."""
        send = self._streams.pop(session_id, None)
        if send is not None:
            send.close()

    def close_all(self) -> None:
        """End every open stream: the server is shutting down and must not wait for them."""
        streams, self._streams = self._streams, {}
        for send in streams.values():
            send.close()
