"""`DisconnectWatcher`: a block that waits is cancelled by a disconnect; one that never waits costs no task."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mcp_asgi.concurrency import DisconnectWatcher


class Connection:
    """An ASGI `receive` whose client leaves when `leave()` is called; counts the reads."""

    def __init__(self) -> None:
        self.reads = 0
        self._gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        await self._gone.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self._gone.set()


async def test_a_block_that_never_waits_reads_nothing_and_leaves_nothing_scheduled() -> None:
    connection = Connection()
    tasks_before = len(asyncio.all_tasks())
    with DisconnectWatcher(connection.receive) as watch:
        assert len(asyncio.all_tasks()) == tasks_before  # no watcher task until the block waits
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert connection.reads == 0
    assert not watch.disconnected
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_disconnect_cancels_a_block_that_waits() -> None:
    connection = Connection()
    abandoned: list[bool] = []
    finished = False
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, connection.leave)
    with DisconnectWatcher(connection.receive, lambda: abandoned.append(True)) as watch:
        await asyncio.sleep(5)
        finished = True
    assert watch.disconnected and abandoned == [True] and not finished
    assert connection.reads == 1


async def test_the_watcher_stops_reading_when_the_block_ends() -> None:
    connection = Connection()
    with DisconnectWatcher(connection.receive) as watch:
        await asyncio.sleep(0.02)  # long enough for the watcher to start reading
    assert connection.reads == 1
    connection.leave()
    await asyncio.sleep(0.02)
    assert not watch.disconnected


async def test_an_error_inside_the_block_propagates() -> None:
    connection = Connection()
    with pytest.raises(ValueError, match="boom"):
        with DisconnectWatcher(connection.receive):
            await asyncio.sleep(0)
            raise ValueError("boom")
