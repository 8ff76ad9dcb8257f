"""TaskCancelScope's deadlines: a timer only when asked for, gone with the block, and only our cancellation kept."""

from __future__ import annotations

import asyncio
import sys

import anyio
import pytest

from mcp_asgi import concurrency
from mcp_asgi.cancel_scope import TaskCancelScope


def cancelling() -> int:
    """How many cancellations the running task has pending (0 on Python 3.10, which does not count)."""
    task = asyncio.current_task()
    return task.cancelling() if sys.version_info >= (3, 11) and task is not None else 0


def test_concurrency_re_exports_the_same_class() -> None:
    assert concurrency.TaskCancelScope is TaskCancelScope


async def test_a_deadline_cancels_the_block_and_is_swallowed() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    steps: list[str] = []
    with TaskCancelScope() as scope:
        scope.cancel_at(asyncio.get_running_loop().time() + 0.05)
        await asyncio.sleep(5)
        steps.append("never")
    assert steps == [] and scope.cancelled_caught and scope.cancel_delivered
    assert loop.time() - started < 2
    assert cancelling() == 0


async def test_a_deadline_set_before_entry_counts_from_when_it_was_set() -> None:
    scope = TaskCancelScope()
    scope.cancel_at(asyncio.get_running_loop().time() + 0.02)
    await asyncio.sleep(0.05)  # past the deadline before the block starts: it stops at its first wait
    steps: list[str] = []
    with scope:
        steps.append("entered")
        await asyncio.sleep(5)
        steps.append("never")
    assert steps == ["entered"] and scope.cancelled_caught


async def test_a_later_deadline_replaces_an_earlier_one() -> None:
    with TaskCancelScope() as scope:
        scope.cancel_at(asyncio.get_running_loop().time() + 0.02)
        scope.cancel_at(asyncio.get_running_loop().time() + 5)
        await asyncio.sleep(0.1)  # the first deadline would have cut this
    assert not scope.cancel_called and not scope.cancelled_caught


async def test_a_timer_for_a_scope_that_already_exited_does_nothing() -> None:
    loop = asyncio.get_running_loop()
    with TaskCancelScope() as scope:
        scope.cancel_at(asyncio.get_running_loop().time() + 0.03)  # armed, then the block ends well before it is due
    late = TaskCancelScope()
    with late:
        pass
    loop.call_later(0.01, late.cancel)  # someone else's timer, firing after the block
    late.cancel_at(asyncio.get_running_loop().time() + 0.01)  # a deadline set after the block: no timer at all
    await asyncio.sleep(0.1)  # past every deadline: any cancellation would land here
    assert not scope.cancel_called and not scope.cancelled_caught
    assert late.cancel_called and not late.cancel_delivered and not late.cancelled_caught
    assert cancelling() == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="only 3.11+ counts cancellations (Task.uncancel)")
async def test_a_cancellation_from_elsewhere_passing_through_is_not_swallowed() -> None:
    scope = TaskCancelScope()
    inside = asyncio.Event()

    async def block() -> None:
        with scope:
            inside.set()
            await asyncio.sleep(5)

    task = asyncio.ensure_future(block())
    await inside.wait()
    scope.cancel()  # ours...
    task.cancel()  # ...and someone else's (a server stopping), before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert scope.cancel_delivered and not scope.cancelled_caught


async def test_a_deadline_waits_for_a_shield_entered_inside_the_block() -> None:
    steps: list[str] = []
    with TaskCancelScope() as scope:
        scope.cancel_at(asyncio.get_running_loop().time() + 0.02)
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0.1)  # the deadline passes meanwhile
            steps.append("shielded part done")
        await asyncio.sleep(5)
        steps.append("never")
    assert steps == ["shielded part done"] and scope.cancelled_caught
    assert cancelling() == 0


async def test_a_block_that_ends_inside_the_shield_was_never_cancelled() -> None:
    with TaskCancelScope() as scope:
        scope.cancel_at(asyncio.get_running_loop().time() + 0.02)
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0.1)
    assert scope.cancel_called and not scope.cancel_delivered and not scope.cancelled_caught
    await asyncio.sleep(0.02)  # no retry left running: nothing cancels the task now
    assert cancelling() == 0
