"""How the app hears of the host's shutdown (mcp_asgi/shutdown.py), and what that stops, in-process."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from mcp_asgi import shutdown
from mcp_asgi.concurrency import forward_with_keepalive


@pytest.fixture
def handlers() -> Iterator[None]:
    """Put the process's SIGTERM/SIGINT handlers back, whatever the test installed."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


async def eventually(condition: Any) -> None:
    with anyio.fail_after(2):
        while not condition():
            await anyio.sleep(0.01)


async def test_the_hosts_handler_still_runs_and_the_loop_hears_of_the_signal(handlers: None) -> None:
    seen: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    host = shutdown.arm()
    chained = signal.getsignal(signal.SIGTERM)
    shutdown.arm()  # every stream arms: the handler is wrapped once
    assert signal.getsignal(signal.SIGTERM) is chained

    signal.raise_signal(signal.SIGTERM)
    assert seen == [signal.SIGTERM]  # the host (uvicorn's handle_exit) is told first
    await eventually(lambda: host.begun)


async def test_a_host_on_loop_add_signal_handler_is_covered_too(handlers: None) -> None:
    # hypercorn's way: the loop's handler runs from its wakeup fd, the Python-level one is a no-op.
    loop = asyncio.get_running_loop()
    seen = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, seen.set)
    try:
        host = shutdown.arm()
        signal.raise_signal(signal.SIGTERM)
        await eventually(lambda: host.begun and seen.is_set())
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


@pytest.mark.parametrize("installed", [signal.SIG_DFL, signal.SIG_IGN])
async def test_default_and_ignored_handlers_are_left_alone(handlers: None, installed: Any) -> None:
    signal.signal(signal.SIGTERM, installed)
    shutdown.arm()
    assert signal.getsignal(signal.SIGTERM) is installed


async def test_ctrl_c_still_raises_keyboard_interrupt(handlers: None) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    host = shutdown.arm()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    await eventually(lambda: host.begun)


def test_arming_off_the_main_thread_installs_nothing(handlers: None) -> None:
    def host_handler(signum: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGTERM, host_handler)

    def in_a_thread() -> None:
        anyio.run(lambda: _arm())

    async def _arm() -> None:
        shutdown.arm()

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(5)
    assert signal.getsignal(signal.SIGTERM) is host_handler


async def test_shutdown_ends_a_streams_wait_but_never_a_delivery_in_progress() -> None:
    shutdown.configure(shutdown.DEFAULT_GRACEFUL_PERIOD)
    send, receive = anyio.create_memory_object_stream[int](10)
    delivered: list[int] = []
    release = anyio.Event()

    async def deliver(item: int) -> None:
        if item == 1:
            shutdown.begin()  # arrives while this delivery is blocked on a slow reader
            await release.wait()
        delivered.append(item)

    async def keepalive() -> None:
        pass

    async with anyio.create_task_group() as group:
        group.start_soon(forward_with_keepalive, receive, deliver, keepalive, 60)
        await send.send(1)
        await anyio.sleep(0.05)
        release.set()
    assert delivered == [1]  # delivered in full, then the stream ended without waiting 60 s

    # A stream opened once shutdown began ends at once.
    with anyio.fail_after(1):
        await forward_with_keepalive(receive, deliver, keepalive, 60)


async def test_calls_get_the_graceful_period_then_are_cancelled() -> None:
    shutdown.configure(0.2)
    host = shutdown.state()
    finished: list[str] = []

    async def work(name: str, seconds: float, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        with host.grace() as grace:
            task_status.started()
            await anyio.sleep(seconds)
            finished.append(name)
        if grace.cut:
            finished.append(f"{name} cut")

    async with anyio.create_task_group() as group:
        await group.start(work, "quick", 0.05)
        await group.start(work, "slow", 30)
        host.begin()
        await group.start(work, "late", 30)  # arrived during the period: the same deadline
    # Both cuts fall due at the same instant (shutdown + period); their order is the loop's.
    assert finished[0] == "quick"
    assert sorted(finished[1:]) == ["late cut", "slow cut"]
    shutdown.configure(shutdown.DEFAULT_GRACEFUL_PERIOD)
