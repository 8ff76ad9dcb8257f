"""Change notifications (list changes, resource updates) to whoever listens.

Listeners are open streams: 2025 GET streams and 2026 `subscriptions/listen`
streams. Each one translates an event into the message its client should see
(or None) and receives it on its own memory stream. Events may be published
from any thread (a sync tool adding a tool runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

# ("tools",) | ("prompts",) | ("resources",) | ("resource", uri)
Event = tuple[str, ...]
Translate = Callable[[Event], "dict[str, Any] | None"]

LIST_CHANGED = {
    "tools": "notifications/tools/list_changed",
    "prompts": "notifications/prompts/list_changed",
    "resources": "notifications/resources/list_changed",
}


def event_message(event: Event) -> dict[str, Any]:
    """The JSON-RPC notification for an event, before any per-listener tagging."""
    if event[0] == "resource":
        return {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": event[1]}}
    return {"jsonrpc": "2.0", "method": LIST_CHANGED[event[0]]}


def session_change(subscriptions: set[str], event: Event) -> dict[str, Any] | None:
    """What a 2025 session is told of a change: every list change, and updates of what it subscribed to."""
    if event[0] == "resource" and event[1] not in subscriptions:
        return None
    return event_message(event)


class _Listener:
    __slots__ = ("translate", "send", "loop")

    def __init__(self, translate: Translate, send: MemoryObjectSendStream[dict[str, Any]]) -> None:
        self.translate = translate
        self.send = send
        self.loop = asyncio.get_running_loop()

    def deliver(self, event: Event) -> None:
        message = self.translate(event)
        if message is None:
            return
        try:
            self.send.send_nowait(message)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # a listener that stopped reading loses the notification, as a dropped stream would


class ChangeHub:
    """In-process fan-out of change events to open listener streams."""

    def __init__(self, *, buffer: int = 256) -> None:
        self._buffer = buffer
        self._listeners: set[_Listener] = set()

    def __len__(self) -> int:
        return len(self._listeners)

    def listen(self, translate: Translate) -> tuple[MemoryObjectReceiveStream[dict[str, Any]], Callable[[], None]]:
        """A stream of translated events, and the function that ends it."""
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](self._buffer or math.inf)
        listener = _Listener(translate, send)
        self._listeners.add(listener)

        def stop() -> None:
            self._listeners.discard(listener)
            send.close()

        return receive, stop

    def publish(self, event: Event) -> None:
        """Deliver an event to every listener; safe to call from any thread."""
        if not self._listeners:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for listener in list(self._listeners):
            if listener.loop is current:
                listener.deliver(event)
            elif not listener.loop.is_closed():
                listener.loop.call_soon_threadsafe(listener.deliver, event)

    def close(self) -> None:
        """End every listener stream (server shutdown): listen streams then answer and close."""
        for listener in list(self._listeners):
            if listener.loop.is_closed():
                continue
            try:
                current = asyncio.get_running_loop()
            except RuntimeError:
                current = None
            if listener.loop is current:
                listener.send.close()
            else:
                listener.loop.call_soon_threadsafe(listener.send.close)
        self._listeners.clear()
