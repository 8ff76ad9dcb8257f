"""Resumable SSE replies of 2025-11-25 sessions: event ids, the event store, and resumption.

When a reply on a 2025-11-25 session turns into an SSE stream, it opens with a
priming event (an id, an empty `data:` and a `retry:`), every later event carries
an id `<stream id>:<seq>`, and every event is recorded in an `EventStore`. A client
that lost the connection, or whose connection the server closed on purpose
(`Context.close_sse_stream`, "polling"), sends `GET` with `Last-Event-ID` and gets
the rest of that stream, live until its response. Plain JSON replies never touch
any of this.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from typing import Any, NamedTuple, Protocol

import anyio
from starlette.types import Receive, Send

from mcp_asgi.concurrency import DisconnectWatcher
from mcp_asgi.protocol.jsonrpc import MCPError, encode
from mcp_asgi.transports.http_common import SSE_HEADERS, SSE_KEEPALIVE, send_bytes, sse_event
from mcp_asgi.transports.sse_writes import CoalescedWrites

logger = logging.getLogger("mcp_asgi")


class StoredEvent(NamedTuple):
    event_id: str
    # None for the priming event, which carries no message.
    message: dict[str, Any] | None


class Replay(NamedTuple):
    events: list[StoredEvent]
    # The stream's last event (normally the response) is among `events` or before them.
    ended: bool


class EventStore(Protocol):
    """Where the events of resumable streams live. A shared store lets any worker resume a stream."""

    async def open_stream(self, session_id: str) -> str | None:
        """Start recording a new stream of `session_id`; its id, or None if no more streams fit.

        None makes the reply non-resumable: it still streams, its events carry no ids.
        """
        ...

    async def append(self, stream_id: str, message: dict[str, Any] | None) -> str | None:
        """Record an event (None: the priming event); its event id, or None if the stream was forgotten."""
        ...

    async def end_stream(self, stream_id: str, *, delivered: bool) -> None:
        """No more events will come; `delivered` if the client received the last one live."""
        ...

    async def read(self, session_id: str, last_event_id: str, timeout: float) -> Replay | None:
        """The events after `last_event_id` on its stream, waiting up to `timeout` s for one if none are.

        None if the id is unknown, belongs to another session, or events after it were dropped.
        Reading the end of an ended stream counts as delivering it.
        """
        ...

    async def forget_session(self, session_id: str) -> None:
        """The session ended: drop all its streams; readers waiting on them stop."""
        ...


def _is_seq(text: str) -> bool:
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def check_event_limits(
    *,
    max_events_per_stream: int,
    retention: float,
    undelivered_retention: float,
    max_streams: int,
    max_bytes_per_stream: int,
    max_total_bytes: int,
) -> None:
    """Refuse event store limits that could not work; shared by every store so they agree."""
    if max_events_per_stream < 2:
        raise ValueError("`max_events_per_stream` must be at least 2 (the priming event and the response)")
    if retention < 0 or undelivered_retention < 0:
        raise ValueError("`retention` and `undelivered_retention` must be >= 0 seconds")
    if max_streams < 1:
        raise ValueError("`max_streams` must be at least 1")
    if max_bytes_per_stream < 1 or max_total_bytes < max_bytes_per_stream:
        raise ValueError(
            "`max_bytes_per_stream` must be at least 1 byte and `max_total_bytes` at least `max_bytes_per_stream`"
        )


# Not a dataclass: `import mcp_asgi` loads this module, and creating a dataclass exec()s the
# source of its methods (ten of them were a quarter of our import cost).
class _Stream:
    __slots__ = ("session_id", "events", "size", "next_seq", "ended", "expires_at", "changed")

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        # (seq, message, its JSON size in bytes)
        self.events: deque[tuple[int, dict[str, Any] | None, int]] = deque()
        self.size = 0
        self.next_seq = 0
        self.ended = False
        self.expires_at = float("inf")
        # Set on the next change; made only when a reader waits (most streams are never waited on).
        self.changed: anyio.Event | None = None

    def wake(self) -> None:
        if self.changed is not None:
            self.changed.set()
            self.changed = None

    def next_change(self) -> anyio.Event:
        if self.changed is None:
            self.changed = anyio.Event()
        return self.changed


class InMemoryEventStore:
    """Events in this process's memory, bounded in events, bytes and streams.

    Per stream, at most `max_events_per_stream` events and `max_bytes_per_stream`
    bytes (their JSON size): older events are dropped first, and a resume from before
    them is refused. A stream is forgotten `retention` seconds after its response was
    delivered, or `undelivered_retention` seconds after it ended if nobody came back
    for it. In all, at most `max_streams` streams and `max_total_bytes` bytes.

    When full, ended streams are forgotten first (soonest to expire first); a live
    stream is never evicted for another. If that frees too little, a new stream is
    not recorded (`open_stream` returns None) and a stream whose next event does not
    fit is forgotten from then on: either reply still streams live to its client, but
    it cannot be resumed, and a `Last-Event-ID` naming it gets the 400 of an unknown
    event id (the client then retries its request, as after any lost stream).
    """

    def __init__(
        self,
        *,
        max_events_per_stream: int = 1000,
        retention: float = 60.0,
        undelivered_retention: float = 600.0,
        max_streams: int = 10_000,
        max_bytes_per_stream: int = 1024 * 1024,
        max_total_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        check_event_limits(
            max_events_per_stream=max_events_per_stream,
            retention=retention,
            undelivered_retention=undelivered_retention,
            max_streams=max_streams,
            max_bytes_per_stream=max_bytes_per_stream,
            max_total_bytes=max_total_bytes,
        )
        self.max_events_per_stream = max_events_per_stream
        self.retention = retention
        self.undelivered_retention = undelivered_retention
        self.max_streams = max_streams
        self.max_bytes_per_stream = max_bytes_per_stream
        self.max_total_bytes = max_total_bytes
        # The JSON size of every event held.
        self.total_bytes = 0
        self._streams: dict[str, _Stream] = {}
        self._by_session: dict[str, set[str]] = {}
        # (expires_at, stream id) of ended streams; entries go stale when a deadline moves, and are skipped.
        self._deadlines: list[tuple[float, str]] = []
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._streams)

    async def open_stream(self, session_id: str) -> str | None:
        self._sweep()
        if len(self._streams) >= self.max_streams and not self._evict_ended():
            return None  # every stream is live: this reply goes unrecorded rather than evicting one
        stream_id = str(next(self._ids))
        self._streams[stream_id] = _Stream(session_id)
        self._by_session.setdefault(session_id, set()).add(stream_id)
        return stream_id

    async def append(self, stream_id: str, message: dict[str, Any] | None) -> str | None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        size = 0 if message is None else len(encode(message))
        if size > self.max_bytes_per_stream or not self._make_room(stream, size):
            # Skipping just this event would let a resume silently miss it: forget the whole stream.
            self._drop(stream_id)
            return None
        seq = stream.next_seq
        stream.next_seq += 1
        stream.events.append((seq, message, size))
        stream.size += size
        self.total_bytes += size
        stream.wake()
        return f"{stream_id}:{seq}"

    def _make_room(self, stream: _Stream, size: int) -> bool:
        """Drop this stream's oldest events past its own limits, then ended streams; False if still full."""
        while stream.events and (
            len(stream.events) >= self.max_events_per_stream or stream.size + size > self.max_bytes_per_stream
        ):
            self._pop_oldest(stream)
        while self.total_bytes + size > self.max_total_bytes:
            if self._evict_ended():
                continue
            if not stream.events:
                return False
            # Its own older events, never another live stream's: a resume from before them is refused.
            self._pop_oldest(stream)
        return True

    def _pop_oldest(self, stream: _Stream) -> None:
        _, _, dropped = stream.events.popleft()
        stream.size -= dropped
        self.total_bytes -= dropped

    async def end_stream(self, stream_id: str, *, delivered: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.ended = True
        self._expire(stream_id, stream, self.retention if delivered else self.undelivered_retention)
        stream.wake()

    async def read(self, session_id: str, last_event_id: str, timeout: float) -> Replay | None:
        self._sweep()  # a stream past its retention is gone even if no new stream was opened since
        stream_id, _, seq_text = last_event_id.rpartition(":")
        stream = self._streams.get(stream_id)
        # ASCII digits only: `str.isdigit` also accepts '²', which `int` refuses; and few enough of
        # them that `int` never meets its limit on digit count.
        if stream is None or stream.session_id != session_id or not _is_seq(seq_text):
            return None
        after = int(seq_text)
        if not self._readable(stream, after):
            return None
        if after == stream.next_seq - 1 and not stream.ended and timeout > 0:
            changed = stream.next_change()
            with anyio.move_on_after(timeout):
                await changed.wait()
            if self._streams.get(stream_id) is not stream or not self._readable(stream, after):
                return None
        events = [StoredEvent(f"{stream_id}:{seq}", message) for seq, message, _ in stream.events if seq > after]
        if stream.ended:
            self._expire(stream_id, stream, self.retention)
        return Replay(events, stream.ended)

    async def forget_session(self, session_id: str) -> None:
        for stream_id in list(self._by_session.get(session_id, ())):
            self._drop(stream_id)

    @staticmethod
    def _readable(stream: _Stream, after: int) -> bool:
        oldest = stream.events[0][0] if stream.events else stream.next_seq
        # Past the newest event is a made-up id; before the oldest kept one, events were lost.
        return oldest - 1 <= after < stream.next_seq

    def _expire(self, stream_id: str, stream: _Stream, delay: float) -> None:
        deadline = time.monotonic() + delay
        if deadline < stream.expires_at:
            stream.expires_at = deadline
            heapq.heappush(self._deadlines, (deadline, stream_id))

    def _drop(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        self.total_bytes -= stream.size
        stream.wake()
        ids = self._by_session.get(stream.session_id)
        if ids is not None:
            ids.discard(stream_id)
            if not ids:
                del self._by_session[stream.session_id]

    def _sweep(self) -> None:
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, stream_id = heapq.heappop(self._deadlines)
            stream = self._streams.get(stream_id)
            if stream is not None and stream.expires_at <= now:
                self._drop(stream_id)

    def _evict_ended(self) -> bool:
        """Forget the ended stream that expires first; False if every stream is still live."""
        # Only ended streams have deadlines, so the heap holds nothing else.
        while self._deadlines:
            _, stream_id = heapq.heappop(self._deadlines)
            if stream_id in self._streams:
                self._drop(stream_id)
                return True
        return False


def _event_bytes(event: StoredEvent) -> bytes:
    if event.message is None:
        return b"id: " + event.event_id.encode() + b"\ndata: \n\n"
    return sse_event(event.message, event_id=event.event_id)


class ResumableReply(CoalescedWrites):
    """Answers one request of a 2025-11-25 session: JSON by default; as SSE, resumable.

    The SSE stream is written to the POST's response while it is attached, and
    always recorded in the store; `close` detaches it (the server-initiated
    disconnect of SSE polling) and later events only reach the store.

    Events sent before the result wait for the loop's next turn before they are written
    (`CoalescedWrites._later`): a call that finishes first (a tool sending one progress notification)
    goes out as the response head and one body write, not one write per event; every
    write is a system call and a pass through the server. A call that waits for
    anything has its events written as soon as it waits.
    """

    __slots__ = (
        "headers",
        "allow_sse",
        "store",
        "session_id",
        "retry_ms",
        "closed",
        "started",
        "stream_id",
        "attached",
    )

    def __init__(
        self,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        allow_sse: bool,
        store: EventStore,
        session_id: str,
        retry_ms: int,
    ) -> None:
        super().__init__(send)
        self.headers = headers
        self.allow_sse = allow_sse
        self.store = store
        self.session_id = session_id
        self.retry_ms = retry_ms
        self.closed = False
        self.started = False
        # The stream's id in the store while it is recorded; None if the store was full.
        self.stream_id: str | None = None
        self.attached = False

    async def early(self, message: dict[str, Any] | None) -> bool:
        """Send a message before the result (None: a keep-alive); False if this reply cannot carry it."""
        if not self.allow_sse or self.closed:
            return False
        if message is None:
            if self.attached:
                async with self._locked():
                    if self.attached:
                        await self._write(SSE_KEEPALIVE, more=True)
            return True
        async with self._locked():
            priming = await self._start()
            event_id = await self._record(message)
            if self.attached:
                self._later(priming + sse_event(message, event_id=event_id))
        return True

    async def close(self) -> None:
        """Turn the reply into SSE if it is not yet, then end the HTTP response; the call goes on.

        A stream the store does not record stays open instead: its client could not resume it.
        """
        if not self.allow_sse or self.closed:
            return
        async with self._locked():
            priming = await self._start()
            if self.attached and self.stream_id is not None:
                self.attached = False
                await self._write(priming, more=False)
            elif priming:
                await self._write(priming, more=True)

    async def finish(self, message: dict[str, Any] | None, status: int = 200) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.started and self._lock is None:
            if message is None:
                await send_bytes(self.send, 202, b"", self.headers)
            else:
                await send_bytes(self.send, status, encode(message), self.headers)
            return
        async with self._locked():
            priming = await self._start()
            event_id = await self._record(message) if message is not None else None
            if self.stream_id is not None:
                with contextlib.suppress(MCPError):  # the stream then expires by itself
                    await self.store.end_stream(self.stream_id, delivered=self.attached)
            if self.attached:
                self.attached = False
                body = priming + (sse_event(message, event_id=event_id) if message is not None else b"")
                await self._write(body, more=False)

    async def _record(self, message: dict[str, Any] | None) -> str | None:
        """Store an event while the stream is recorded; its id, or None (then nothing more is stored)."""
        if self.stream_id is None:
            return None
        try:
            event_id = await self.store.append(self.stream_id, message)
        except MCPError as error:
            # A shared store that went away costs resumability, never the reply being written.
            logger.warning("Event store failed; the rest of this SSE reply is not resumable: %s", error.message)
            event_id = None
        if event_id is None:
            self.stream_id = None  # the store forgot the stream (full): the rest goes out without ids
        return event_id

    async def _start(self) -> bytes:
        """Make the reply SSE, once; its priming event, for the caller to send with what follows.

        The priming event goes out in the same body chunk as the first message (one write, not
        two): nothing waits between them, and every write is a system call.
        """
        if self.started:
            return b""
        self.started = True
        try:
            self.stream_id = await self.store.open_stream(self.session_id)
        except MCPError as error:
            logger.warning("Event store failed; this SSE reply is not resumable: %s", error.message)
        priming = await self._record(None)
        self.attached = True
        self._head = SSE_HEADERS + self.headers
        if priming is None:
            # No id to come back with: a retry delay would only invite a pointless reconnection.
            return b": not resumable, the event store is full\n\n"
        return b"id: %s\nretry: %d\ndata: \n\n" % (priming.encode(), self.retry_ms)


async def resume_stream(
    store: EventStore,
    session_id: str,
    last_event_id: str,
    receive: Receive,
    send: Send,
    *,
    keepalive_interval: float,
    retry_ms: int,
) -> bool:
    """Serve `GET` with `Last-Event-ID`: the rest of that one stream, live until it ends.

    False (nothing sent) if the store cannot place the id.
    """
    replay = await store.read(session_id, last_event_id, 0)
    if replay is None:
        return False
    headers = SSE_HEADERS + [(b"mcp-session-id", session_id.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"retry: %d\n\n" % retry_ms, "more_body": True})
    with DisconnectWatcher(receive):
        waited = False
        while replay is not None:
            if replay.events:
                body = b"".join(_event_bytes(event) for event in replay.events)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                last_event_id = replay.events[-1].event_id
            elif waited and not replay.ended:
                await send({"type": "http.response.body", "body": SSE_KEEPALIVE, "more_body": True})
            if replay.ended:
                break
            try:
                replay = await store.read(session_id, last_event_id, keepalive_interval)
            except MCPError:
                break  # the store went away: end this stream; the client comes back with its last id
            waited = True
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return True
