"""`mcp_asgi.thread_pool`: the threads that run blocking user functions, and what sync tools rely on."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from mcp import Client

from mcp_asgi import Context, MCPServer
from mcp_asgi.thread_pool import THREAD_NAME, WorkerPool, pool
from tests.conftest import serve

request_name: contextvars.ContextVar[str] = contextvars.ContextVar("request_name", default="unset")


async def test_the_function_runs_in_a_worker_thread_with_the_callers_context() -> None:
    request_name.set("call 1")
    seen = await pool().run(lambda: (threading.current_thread().name, request_name.get()))
    assert seen == (THREAD_NAME, "call 1")


async def test_errors_reach_the_caller() -> None:
    def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        await pool().run(fail)

    def stop() -> None:
        raise StopIteration

    with pytest.raises(RuntimeError, match="StopIteration"):
        await pool().run(stop)


async def test_from_thread_reaches_the_loop_inside_the_function() -> None:
    loop_thread = threading.current_thread().name

    async def on_the_loop(value: int) -> tuple[int, str]:
        await asyncio.sleep(0)
        return value * 2, threading.current_thread().name

    def blocking() -> tuple[tuple[int, str], str]:
        awaited = anyio.from_thread.run(on_the_loop, 21)
        called = anyio.from_thread.run_sync(lambda: threading.current_thread().name)
        return awaited, called

    assert await pool().run(blocking) == ((42, loop_thread), loop_thread)


async def test_a_cancelled_caller_returns_at_once_and_the_thread_finishes_the_function() -> None:
    release = threading.Event()
    finished = threading.Event()
    checked: list[str] = []

    def slow() -> str:
        release.wait(5)
        try:
            anyio.from_thread.check_cancelled()
            checked.append("not cancelled")
        except BaseException as exc:  # anyio raises its backend's cancellation
            checked.append(type(exc).__name__)
        finished.set()
        return "done"

    started = time.monotonic()
    with anyio.move_on_after(0.1) as scope:
        await pool().run(slow)
    assert scope.cancelled_caught and time.monotonic() - started < 2
    assert not finished.is_set()  # the caller did not wait for the thread
    release.set()
    assert await anyio.to_thread.run_sync(finished.wait, 5)
    # The function saw its caller's cancellation, as it would in one of anyio's workers.
    assert checked == ["CancelledError"]
    assert await pool().run(lambda: "still serving") == "still serving"


async def test_calls_past_anyios_thread_limit_wait_for_a_free_thread() -> None:
    limiter = anyio.to_thread.current_default_thread_limiter()
    saved = limiter.total_tokens
    limiter.total_tokens = 2
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    gate = threading.Event()

    def work(index: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        gate.wait(5)
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return index

    try:
        calls = [asyncio.ensure_future(pool().run(lambda i=i: work(i))) for i in range(6)]
        await asyncio.sleep(0.1)
        gate.set()
        assert await asyncio.gather(*calls) == list(range(6))
    finally:
        limiter.total_tokens = saved
    assert running[1] <= 2


async def test_many_calls_finishing_together_each_get_their_own_result() -> None:
    # Results landing in one turn of the loop share one wake-up; none may be lost or crossed.
    results = await asyncio.gather(*(pool().run(lambda i=i: i * i) for i in range(300)))
    assert results == [i * i for i in range(300)]


async def test_a_burst_of_quick_calls_is_served_by_the_thread_already_awake() -> None:
    # The old pool woke a thread per call waiting (40 here): each fought the others for the GIL.
    await pool().run(lambda: None)
    before = sum(thread.name == THREAD_NAME for thread in threading.enumerate())
    await asyncio.gather(*(pool().run(lambda: None) for _ in range(40)))
    started = sum(thread.name == THREAD_NAME for thread in threading.enumerate()) - before
    # One thread takes them all as it frees up; a few more only if the loop starved it of the GIL
    # past the stall period (a loaded machine), never one per call.
    assert started <= 3


async def test_slow_calls_still_run_side_by_side() -> None:
    # A call stuck behind a slow one wakes another thread after the stall period, not after it.
    started = time.monotonic()
    await asyncio.gather(*(pool().run(lambda: time.sleep(0.3)) for _ in range(4)))
    assert time.monotonic() - started < 0.9  # four in a row would take 1.2 s


def sync_tools_server() -> MCPServer:
    mcp = MCPServer("threads")

    @mcp.tool
    def progress_from_a_thread(ctx: Context) -> str:
        """A plain function that reports progress through the loop, as FastMCP users write it."""
        anyio.from_thread.run(ctx.report_progress, 1, 2)
        return threading.current_thread().name

    @mcp.tool
    def needs_an_int(count: int) -> int:
        return count + 1

    return mcp


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_sync_tool_reports_progress_with_from_thread(mode: str) -> None:
    updates: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append(progress)

    with serve(sync_tools_server().http_app()) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            result = await client.call_tool("progress_from_a_thread", {}, progress_callback=on_progress)
            invalid = await client.call_tool("needs_an_int", {"count": "many"})
    assert result.is_error is False and result.content[0].text == THREAD_NAME
    assert updates == [1]
    assert invalid.is_error is True and "count" in invalid.content[0].text


async def test_shutdown_answers_a_sync_call_after_its_period_while_the_thread_finishes() -> None:
    from mcp_asgi import shutdown

    # A loop of its own, so this test's shutdown state touches no other test.
    release = threading.Event()
    finished = threading.Event()

    def slow() -> None:
        release.wait(5)
        finished.set()

    async def call() -> tuple[bool, float]:
        host = shutdown.state()
        host.graceful_period = 0.1
        loop = asyncio.get_running_loop()
        started = loop.time()
        with host.grace() as grace:
            loop.call_later(0.05, host.begin)
            await pool().run(slow)
        return grace.cut, loop.time() - started

    cut, took = await asyncio.to_thread(asyncio.run, call())
    assert cut and took < 2  # the call was answered when its period ended, not when the thread did
    assert not finished.is_set()
    release.set()
    assert await asyncio.to_thread(finished.wait, 5)


async def test_calls_fail_with_the_reason_when_no_thread_can_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # The thread is started after the callers queued (at the end of the loop's turn): each of them
    # gets the error, none is left waiting forever; the next calls start a thread as usual.
    workers = WorkerPool(asyncio.get_running_loop())

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    calls = asyncio.gather(*(workers.run(lambda: 1) for _ in range(3)), return_exceptions=True)
    outcomes = await asyncio.wait_for(calls, 5)
    assert [str(outcome) for outcome in outcomes] == ["can't start new thread"] * 3
    monkeypatch.undo()
    assert await workers.run(lambda: 2) == 2
