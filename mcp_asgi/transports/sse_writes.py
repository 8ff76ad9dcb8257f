"""What both streamed replies of a POST share: SSE bytes written at the loop's next turn, in order.

`JSONOrSSEReply` (http_reply.py) and `ResumableReply` (events.py) hold back what a call sends
before its result until the loop's next turn: a call that finishes first goes out as the
response head and one body write, a call that waits has its messages written as soon as it
waits, by a task of their own. The lock keeps that task's writes and the call's in order.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Send

from mcp_asgi.concurrency import write_lock

logger = logging.getLogger("mcp_asgi")


class CoalescedWrites:
    """The write scheduling of a streamed reply; subclasses say when writing has stopped (`_stopped`)."""

    __slots__ = ("send", "_pending", "_head", "_lock", "_flush", "_ended")

    def __init__(self, send: Send) -> None:
        self.send = send
        # SSE bytes not yet written; the response head's headers until it is sent (fixed when the
        # reply turns SSE: an error's headers belong to a JSON reply only); the response complete.
        self._pending: list[bytes] = []
        self._head: list[tuple[bytes, bytes]] | None = None
        # Created on the first SSE use only: a JSON reply pays for no lock.
        self._lock: asyncio.Lock | None = None
        # The scheduled write of `_pending` (a loop callback, then a task), while there is one.
        self._flush: asyncio.Handle | asyncio.Task[None] | None = None
        self._ended = False

    def _stopped(self) -> bool:
        """True once nothing more may be written by the scheduled task."""
        return self._ended

    def _later(self, body: bytes) -> None:
        """Write `body` with whatever else is sent before the loop's next turn."""
        self._pending.append(body)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        # The call waits for something: what it sent goes out now, in a task of its own.
        self._flush = asyncio.ensure_future(self._write_pending()) if self._pending and not self._stopped() else None

    async def _write_pending(self) -> None:
        try:
            async with self._locked():
                if self._pending and not self._stopped():
                    await self._write(b"", more=True)
        except Exception:  # the client is gone; the call's own next write finds out too
            logger.debug("Writing a streamed reply's messages failed", exc_info=True)
        finally:
            self._flush = None

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = write_lock()
        return self._lock

    async def _write(self, body: bytes, *, more: bool) -> None:
        """Write the pending messages and `body`, after the response head (once); with the lock held."""
        if self._pending:
            body = b"".join(self._pending) + body
            self._pending.clear()
        if not more:
            self._ended = True
            if isinstance(self._flush, asyncio.Handle):
                self._flush.cancel()
                self._flush = None
        if self._head is not None:
            head, self._head = self._head, None
            await self.send({"type": "http.response.start", "status": 200, "headers": head})
        if body or not more:
            await self.send({"type": "http.response.body", "body": body, "more_body": more})
