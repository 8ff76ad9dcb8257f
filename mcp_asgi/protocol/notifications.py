"""Change notifications (list changes, resource updates) to whoever listens.

Listeners are open streams: 2025 GET streams and 2026 `subscriptions/listen`
streams. Each one translates an event into the message its client should see
(or None) and receives it on its own memory stream. Events may be published
from any thread (a sync tool adding a tool runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import math
import threading
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
    """In-process fan-out of change events to open listener streams.

    Listeners are added and removed on event loops, while events may be published (and the hub
    closed) from any thread: a sync tool runs in a worker thread, and a test or a host may close
    the hub from its own thread. A lock guards the listener set, and delivery to a listener
    always happens on that listener's own loop, because anyio memory streams are not thread-safe.
    """

    def __init__(self, *, buffer: int = 256) -> None:
        self._buffer = buffer
        self._listeners: set[_Listener] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._listeners)

    def listen(self, translate: Translate) -> tuple[MemoryObjectReceiveStream[dict[str, Any]], Callable[[], None]]:
        """A stream of translated events, and the function that ends it (call both on the same loop)."""
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](self._buffer or math.inf)
        listener = _Listener(translate, send)
        with self._lock:
            self._listeners.add(listener)

        def stop() -> None:
            with self._lock:
                self._listeners.discard(listener)
            send.close()

        return receive, stop

    def publish(self, event: Event) -> None:
        """Deliver an event to every listener; safe to call from any thread."""
        if not self._listeners:
            return
        for listener in self._snapshot():
            _on_loop(listener.loop, listener.deliver, event)

    def close(self) -> None:
        """End every listener stream (server shutdown): listen streams then answer and close."""
        with self._lock:
            listeners, self._listeners = self._listeners, set()
        for listener in listeners:
            _on_loop(listener.loop, listener.send.close)

    def _snapshot(self) -> list[_Listener]:
        with self._lock:
            return list(self._listeners)


def _on_loop(loop: asyncio.AbstractEventLoop, function: Callable[..., None], *args: Any) -> None:
    """Run `function(*args)` on `loop`: now if this thread runs it, else as soon as the loop can."""
    try:
        current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if loop is current:
        function(*args)
        return
    try:
        loop.call_soon_threadsafe(function, *args)
    except RuntimeError:
        pass  # that loop is closed: its listener is gone with it
