"""`DisconnectWatcher`: a block that waits is cancelled by a disconnect; one that never waits costs no task."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import anyio
import pytest

from mcp_asgi.concurrency import WATCH_AFTER, DisconnectWatcher, TaskCancelScope


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


async def test_a_block_that_waits_briefly_starts_no_watcher() -> None:
    # A sync tool's hop to its thread, a quick database call: no task, no read, no cancellation.
    connection = Connection()
    tasks_before = len(asyncio.all_tasks())
    for _ in range(3):
        with DisconnectWatcher(connection.receive):
            await asyncio.sleep(WATCH_AFTER / 10)
            assert len(asyncio.all_tasks()) == tasks_before
    await asyncio.sleep(2 * WATCH_AFTER)
    assert connection.reads == 0


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
        await asyncio.sleep(2 * WATCH_AFTER + 0.02)  # long enough for the watcher to start reading
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


async def test_a_shield_inside_the_block_holds_the_cancellation_until_it_ends() -> None:
    connection = Connection()
    steps: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, connection.leave)
    with DisconnectWatcher(connection.receive) as watch:
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0.1)  # the client leaves meanwhile
            steps.append("shielded part done")
        steps.append("after the shield")  # no await yet: the cancellation lands at the next one
        await asyncio.sleep(5)
        steps.append("never")
    assert watch.disconnected
    assert steps == ["shielded part done", "after the shield"]
    if sys.version_info >= (3, 11):
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_shield_around_the_block_is_not_the_blocks_own() -> None:
    connection = Connection()
    asyncio.get_running_loop().call_later(0.02, connection.leave)
    finished = False
    with anyio.CancelScope(shield=True):
        with DisconnectWatcher(connection.receive) as watch:
            await asyncio.sleep(5)
            finished = True
    assert watch.disconnected and not finished


async def test_anyio_scopes_inside_the_block_let_the_cancellation_through() -> None:
    connection = Connection()
    asyncio.get_running_loop().call_later(0.02, connection.leave)
    with DisconnectWatcher(connection.receive) as watch:
        with anyio.move_on_after(10) as inner:
            await anyio.sleep(5)
    assert watch.disconnected and not inner.cancelled_caught


@pytest.mark.skipif(sys.version_info < (3, 11), reason="only 3.11+ counts cancellations (Task.uncancel)")
async def test_a_cancellation_from_elsewhere_is_not_swallowed() -> None:
    connection = Connection()

    async def block() -> None:
        with DisconnectWatcher(connection.receive):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(block())
    await asyncio.sleep(0.01)
    connection.leave()
    task.cancel()  # someone else (a shutdown, the server) cancels the same task as well
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_block_that_ends_before_the_disconnect_leaves_the_task_uncancelled() -> None:
    connection = Connection()
    with DisconnectWatcher(connection.receive) as watch:
        await asyncio.sleep(0.01)
    connection.leave()
    await asyncio.sleep(0.01)  # would raise here if a cancellation were left pending
    assert not watch.disconnected


async def test_a_task_cancel_scope_is_cancelled_from_another_task() -> None:
    scope = TaskCancelScope()
    asyncio.get_running_loop().call_later(0.02, scope.cancel)
    finished = False
    with scope:
        await asyncio.sleep(5)
        finished = True
    assert scope.cancelled_caught and not finished
    await asyncio.sleep(0)  # no cancellation left pending on the task


async def test_a_task_cancel_scope_cancelled_before_entry_stops_at_the_first_wait() -> None:
    scope = TaskCancelScope()
    scope.cancel()
    steps: list[str] = []
    with scope:
        steps.append("entered")
        await asyncio.sleep(5)
        steps.append("never")
    assert steps == ["entered"] and scope.cancelled_caught


async def test_a_task_cancel_scope_never_cancelled_catches_nothing() -> None:
    with TaskCancelScope() as scope:
        await asyncio.sleep(0)
    scope.cancel()  # after the block: nothing left to cancel
    await asyncio.sleep(0)
    assert not scope.cancelled_caught
