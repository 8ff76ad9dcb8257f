"""Small HTTP helpers the transports share: headers, bodies, plain responses, SSE framing."""

from __future__ import annotations

import asyncio
import functools
import weakref
from typing import Any

from starlette.types import Receive, Scope, Send

from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, MCPError, encode, error_response

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
# Seconds a client has to send its whole request body once its headers arrived.
BODY_TIMEOUT = 30.0


# Headers that must appear at most once (RFC 9110 `Host`, RFC 6454 `Origin`): when either is
# repeated, `header_map` lists it under this key. A space cannot occur in a header name, so no
# real header collides with it.
REPEATED_HEADERS = " repeated"
_SINGLE_HEADERS = (b"host", b"origin")


def header_map(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name (ASGI already lower-cases them); later repeats win.

    A repeated `Host` or `Origin` is noted under `REPEATED_HEADERS` for the Host/Origin guard.
    """
    raw = scope["headers"]
    if not isinstance(raw, (list, tuple)):
        raw = scope["headers"] = list(raw)
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}
    if len(headers) != len(raw):
        # Some name is repeated (rare: the common path pays one length comparison). Only now
        # look for the two names whose repeats matter.
        seen: list[bytes] = []
        for name, _ in raw:
            if name in _SINGLE_HEADERS:
                seen.append(name)
        repeated = [name.decode() for name in _SINGLE_HEADERS if seen.count(name) > 1]
        if repeated:
            headers[REPEATED_HEADERS] = ", ".join(repeated)
    return headers


# Clients send the same few Accept values on every request.
@functools.lru_cache(maxsize=256)
def media_types(value: str) -> frozenset[str]:
    return frozenset(part.split(";", 1)[0].strip().lower() for part in value.split(",") if part.strip())


def accepts(accept: str | None, wanted: str) -> bool:
    if accept is None:
        return False
    types = media_types(accept)
    major = wanted.split("/", 1)[0]
    return wanted in types or "*/*" in types or f"{major}/*" in types


def is_json_content_type(value: str | None) -> bool:
    return value is not None and value.split(";", 1)[0].strip().lower() == "application/json"


async def read_body(receive: Receive, limit: int, declared: str | None, timeout: float | None = BODY_TIMEOUT) -> bytes:
    """The whole request body; 413 past `limit` bytes, 408 if it takes longer than `timeout` seconds.

    The deadline covers the whole body, not each chunk: a client trickling a byte
    at a time must not hold a connection and a task open forever.
    """
    if declared is not None and _declares_more_than(declared, limit):
        raise MCPError(INVALID_REQUEST, f"Request body larger than {limit} bytes", http_status=413)
    if timeout is None:
        return await _read_chunks(receive, limit)
    # Not an anyio scope, nor even a timer of its own: every POST reads a body, and a cancel scope
    # per request cost several times the read itself (see docs/design.md, "One concurrency
    # library"). One timer per loop watches every read (`_Deadlines`); on expiry it cancels the
    # task as asyncio.timeout does, and only our own cancellation turns into 408.
    task = asyncio.current_task()
    assert task is not None
    deadlines = _deadlines()
    read = deadlines.add(task, timeout)
    try:
        return await _read_chunks(receive, limit)
    except asyncio.CancelledError:
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: count the cancellations that remain
        if not read.expired or (uncancel is not None and uncancel() > 0):
            raise  # cancelled from outside (a disconnect, a shutdown): not ours to swallow
        raise MCPError(
            INVALID_REQUEST, f"Request Timeout: the request body did not arrive within {timeout:g} s", http_status=408
        ) from None
    finally:
        deadlines.reads.pop(read, None)


class _BodyRead:
    """One body being read: its task, when it must be done, and whether that time passed."""

    __slots__ = ("task", "due", "expired")

    def __init__(self, task: asyncio.Task[Any], due: float) -> None:
        self.task = task
        self.due = due
        self.expired = False


class _Deadlines:
    """The body reads of one event loop, and the one timer that cancels those past their deadline.

    A timer per request (`call_later`, then `cancel`) cost a tenth of a trivial 2026-07-28 call;
    registering here is a dict insert and delete. The timer is set for the earliest deadline it
    knows of and only moves earlier; reads that ended before it fires are simply gone from the
    dict, so with a steady flow of requests it fires about once per timeout.
    """

    __slots__ = ("loop", "reads", "timer", "timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reads: dict[_BodyRead, None] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def add(self, task: asyncio.Task[Any], timeout: float) -> _BodyRead:
        read = _BodyRead(task, self.loop.time() + timeout)
        self.reads[read] = None
        if self.timer is None or read.due < self.timer_at:
            self._set_timer(read.due)
        return read

    def _set_timer(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._expire)
        self.timer_at = when

    def _expire(self) -> None:
        self.timer = None
        now = self.loop.time()
        next_due: float | None = None
        for read in list(self.reads):
            if read.due <= now:
                del self.reads[read]
                read.expired = True
                read.task.cancel()
            elif next_due is None or read.due < next_due:
                next_due = read.due
        if next_due is not None:
            self._set_timer(next_due)


_loop_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = weakref.WeakKeyDictionary()


_last_deadlines: _Deadlines | None = None  # the last loop's, at hand: one loop serves almost always


def _deadlines() -> _Deadlines:
    global _last_deadlines
    loop = asyncio.get_running_loop()
    found = _last_deadlines
    if found is None or found.loop is not loop:
        found = _loop_deadlines.get(loop)
        if found is None:
            found = _loop_deadlines[loop] = _Deadlines(loop)
        _last_deadlines = found
    return found


def _declares_more_than(declared: str, limit: int) -> bool:
    """Whether a Content-Length header announces more than `limit` bytes.

    Only ASCII digits are a length (`str.isdigit` also accepts '²', which `int` refuses); one
    longer than 18 digits is over any limit and is not handed to `int`, which refuses past 4300.
    Anything else is left to the server, which must have framed the body somehow: the bytes
    actually received are counted below either way.
    """
    declared = declared.strip()
    if not (declared.isascii() and declared.isdigit()):
        return False
    declared = declared.lstrip("0")
    return len(declared) > 18 or (declared != "" and int(declared) > limit)


async def _read_chunks(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise MCPError(INVALID_REQUEST, f"Request body larger than {limit} bytes", http_status=413)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: tuple[bytes, bytes] | None = JSON_CONTENT_TYPE,
) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    if content_type is not None and body:
        raw.append(content_type)
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, error: MCPError, request_id: Any = None, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    status = error.http_status if error.http_status >= 400 else 400
    if error.headers:
        headers = [*(headers or ()), *error_headers(error)]
    await send_bytes(send, status, encode(error_response(request_id, error)), headers)


def error_headers(error: MCPError) -> list[tuple[bytes, bytes]]:
    """The headers an error asks to be sent with its status, as ASGI wants them."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (error.headers or {}).items()]


def sse_event(message: Any, event: str | None = "message", event_id: str | None = None) -> bytes:
    parts = []
    if event_id is not None:
        parts.append(b"id: " + event_id.encode())
    if event is not None:
        parts.append(b"event: " + event.encode())
    parts.append(b"data: " + (message if isinstance(message, bytes) else encode(message)))
    return b"\n".join(parts) + b"\n\n"


SSE_KEEPALIVE = b": ping\n\n"
