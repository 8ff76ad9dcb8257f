"""A call's graceful period at shutdown (`shutdown._Grace`): shields, other cancellations, calls already over."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import anyio
import pytest

from mcp_asgi import shutdown
from mcp_asgi.shutdown import HostShutdown


@pytest.fixture
async def host() -> AsyncIterator[HostShutdown]:
    """This test's loop, told that calls get 0.05 s once shutdown begins (set back afterwards)."""
    shutdown.configure(0.05)
    yield shutdown.state()
    shutdown.configure(shutdown.DEFAULT_GRACEFUL_PERIOD)


def cancelling() -> int:
    task = asyncio.current_task()
    return task.cancelling() if sys.version_info >= (3, 11) and task is not None else 0


async def test_a_shield_inside_the_call_holds_the_cut_until_it_ends(host: HostShutdown) -> None:
    steps: list[str] = []
    with host.grace() as grace:
        host.begin()
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0.2)  # the period ends meanwhile: this part must finish
            steps.append("shielded part done")
        await asyncio.sleep(5)
        steps.append("never")
    assert steps == ["shielded part done"] and grace.cut
    assert cancelling() == 0


async def test_a_call_arriving_during_shutdown_also_waits_for_its_shield(host: HostShutdown) -> None:
    host.begin()
    steps: list[str] = []
    with host.grace() as grace:
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0.2)
            steps.append("shielded part done")
        await asyncio.sleep(5)
        steps.append("never")
    assert steps == ["shielded part done"] and grace.cut


async def test_a_call_that_ends_inside_its_shield_is_not_cut(host: HostShutdown) -> None:
    with host.grace() as grace:
        host.begin()
        with anyio.CancelScope(shield=True):
            await asyncio.sleep(0.15)
    await asyncio.sleep(0.02)  # nothing is left to cancel the task now
    assert not grace.cut and cancelling() == 0


async def test_a_call_over_before_its_period_ends_is_left_alone(host: HostShutdown) -> None:
    with host.grace() as grace:
        host.begin()  # the cut is scheduled for this call...
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # ...and would land here, after the call, if it were not dropped
    assert not grace.cut and cancelling() == 0


@pytest.mark.skipif(sys.version_info < (3, 11), reason="only 3.11+ counts cancellations (Task.uncancel)")
async def test_a_cancellation_from_elsewhere_at_the_cut_is_not_swallowed(host: HostShutdown) -> None:
    inside = asyncio.Event()
    graces: list[shutdown._Grace] = []

    async def call() -> None:
        with host.grace() as grace:
            graces.append(grace)
            inside.set()
            await asyncio.sleep(5)

    task = asyncio.ensure_future(call())
    await inside.wait()
    host.begin()
    assert host.begun_at is not None
    # Someone else (the server) cancels the task at the very time of the cut: both land together.
    asyncio.get_running_loop().call_at(host.begun_at + host.graceful_period, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert graces[0].cut
