"""Body read deadlines: one timer per loop serves every read, whatever their timeouts and order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.transports import http_common
from mcp_asgi.transports.http_common import read_body


def body_after(delay: float | None, body: bytes = b"{}") -> Any:
    """An ASGI `receive` whose whole body arrives after `delay` s (None: never)."""

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600 if delay is None else delay)
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def timed(receive: Any, timeout: float) -> tuple[object, float]:
    started = time.monotonic()
    try:
        outcome: object = await read_body(receive, 1000, None, timeout)
    except MCPError as error:
        outcome = error.http_status
    return outcome, time.monotonic() - started


async def test_each_read_gets_its_own_deadline_on_one_shared_timer() -> None:
    # A long deadline first, then a shorter one: the timer must move earlier for it.
    slow_long = asyncio.ensure_future(timed(body_after(None), 2.0))
    await asyncio.sleep(0.01)
    slow_short = asyncio.ensure_future(timed(body_after(None), 0.2))
    fast = asyncio.ensure_future(timed(body_after(0.05, b'{"ok":1}'), 0.2))
    (short, short_took), (ok, _) = await asyncio.gather(slow_short, fast)
    assert short == 408 and 0.15 < short_took < 1.5
    assert ok == b'{"ok":1}'
    assert not slow_long.done()  # its own deadline is still ahead
    long, long_took = await slow_long
    assert long == 408 and long_took >= 1.9


async def test_a_finished_read_leaves_nothing_behind_and_is_never_cancelled() -> None:
    assert await read_body(body_after(0), 1000, None, 0.05) == b"{}"
    await asyncio.sleep(0.1)  # past its deadline: nothing may fire at this task now
    assert http_common._deadlines().reads == {}


async def test_a_cancellation_from_elsewhere_is_not_turned_into_408() -> None:
    reading = asyncio.ensure_future(read_body(body_after(None), 1000, None, 5.0))
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert http_common._deadlines().reads == {}
