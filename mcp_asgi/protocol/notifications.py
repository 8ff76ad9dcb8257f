"""Change notifications (list changes, resource updates) to whoever listens.

Listeners are open streams: 2025 GET streams and 2026 `subscriptions/listen`
streams. Each one translates an event into the message its client should see
(or None) and receives it on its own memory stream. Events may be published
from any thread (a sync tool adding a tool runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

logger = logging.getLogger("mcp_asgi")

# ("tools",) | ("prompts",) | ("resources",) | ("resource", uri)
Event = tuple[str, ...]
# The bus channel every worker's hub publishes its changes on, and reads the others' from.
CHANGES_CHANNEL = "changes"
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


def _event_of(message: Any) -> Event | None:
    """The event a bus message carries, or None for anything malformed."""
    event = message.get("event") if isinstance(message, dict) else None
    if not isinstance(event, list) or not event or not all(isinstance(part, str) for part in event):
        return None
    if event[0] in LIST_CHANGED and len(event) == 1:
        return (event[0],)
    if event[0] == "resource" and len(event) == 2:
        return ("resource", event[1])
    return None


class _Link:
    """The hub's tie to one bus: where its events go out, and the task reading the other workers' events."""

    def __init__(self, bus: Any, origin: str, subscription: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.bus = bus
        self.origin = origin
        self.subscription = subscription
        self.loop = loop
        self.task: asyncio.Task[None] | None = None
        self.sending: set[asyncio.Task[Any]] = set()

    def send(self, event: Event) -> None:
        """Publish `event` for the other workers (on this link's loop), logging a failure."""
        task = self.loop.create_task(self._publish(event))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _publish(self, event: Event) -> None:
        try:
            await self.bus.publish(CHANGES_CHANNEL, {"origin": self.origin, "event": list(event)})
        except Exception as error:
            # Local listeners already have it; the other workers miss this one change.
            logger.warning("Could not share a change with the other workers: %s", error)


class ChangeHub:
    """In-process fan-out of change events to open listener streams, linked to the other workers by a bus.

    Listeners are added and removed on event loops, while events may be published (and the hub
    closed) from any thread: a sync tool runs in a worker thread, and a test or a host may close
    the hub from its own thread. A lock guards the listener set, and delivery to a listener
    always happens on that listener's own loop, because anyio memory streams are not thread-safe.
    """

    def __init__(self, *, buffer: int = 256) -> None:
        self._buffer = buffer
        self._listeners: set[_Listener] = set()
        self._lock = threading.Lock()
        self._links: list[_Link] = []

    async def connect(self, bus: Any, origin: str) -> None:
        """Share events with the other workers on `bus`: publish ours, deliver theirs (tagged `origin`)."""
        subscription = bus.subscribe(CHANGES_CHANNEL)
        ready = getattr(bus, "ready", None)
        if ready is not None:
            try:
                await ready(CHANGES_CHANNEL)
            except asyncio.CancelledError:
                subscription.close()
                raise
            except Exception as error:
                # Redis is down as the worker starts: start anyway; the bus subscribes once it is back.
                logger.warning("Not yet hearing other workers' changes: %s", error)
        link = _Link(bus, origin, subscription, asyncio.get_running_loop())
        link.task = link.loop.create_task(self._relay(link), name="mcp-asgi change relay")
        with self._lock:
            self._links.append(link)

    async def disconnect(self) -> None:
        """Stop sharing events (the server shuts down)."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.subscription.close()
            if link.task is not None:
                link.task.cancel()
            for task in list(link.sending):
                task.cancel()

    def forget_closed_loops(self) -> None:
        """Drop the links of event loops that ended (their tasks are gone; their bus closed with them)."""
        with self._lock:
            dead = [link for link in self._links if link.loop.is_closed()]
            self._links = [link for link in self._links if not link.loop.is_closed()]
        for link in dead:
            link.subscription.close()

    async def _relay(self, link: _Link) -> None:
        # Our own events come back from the bus too: they were delivered when published, so skip them.
        async for message in link.subscription:
            if message.get("origin") == link.origin:
                continue
            event = _event_of(message)
            if event is not None:
                self._deliver(event)

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
        """Deliver an event to every listener, here and on the other workers; safe to call from any thread."""
        self._deliver(event)
        with self._lock:
            links = list(self._links)
        for link in links:
            _on_loop(link.loop, link.send, event)

    def _deliver(self, event: Event) -> None:
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
