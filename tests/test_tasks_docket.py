"""DocketRunner (mcp_asgi/tasks/docket.py) against a real redis-server: queueing, retries, outages.

The job's `run_task` is replaced by a recorder here; tests/test_tasks_redis_e2e.py runs the real
runtime in real worker processes.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.tasks.docket import JOB_NAME, DocketRunner
from mcp_asgi.tasks.runner import RetryTask
from tests.redis_server import RedisServer


class Recorder:
    """A stand-in for run_task: records each call; fails the first `fail` attempts with RetryTask."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.fail = fail

    async def __call__(self, server: Any, task_id: str, *, last_attempt: bool) -> None:
        self.calls.append((task_id, last_attempt))
        if len(self.calls) <= self.fail and not last_attempt:
            raise RetryTask("not yet")


async def drain(runner: DocketRunner, url: str, recorder: Recorder, server: Any = None) -> None:
    """Run a pydocket worker in this process until the queue is empty."""
    import docket

    async with docket.Docket(name=runner.name, url=url) as queue:
        queue.register(runner.job(server, recorder))
        async with docket.Worker(queue, minimum_check_interval=timedelta(milliseconds=20)) as worker:
            await worker.run_until_finished()


def runner_for(url: str, **options: Any) -> DocketRunner:
    return DocketRunner(url, name=f"test-{uuid.uuid4().hex[:8]}", **options)


async def test_submit_queues_the_task_for_a_worker(redis_url: str) -> None:
    runner = runner_for(redis_url, retries=0)
    recorder = Recorder()
    try:
        await runner.submit(object(), "task-1")
        await runner.submit(object(), "task-2")
        # Submitting a task again (a retried request) does not run it twice.
        await runner.submit(object(), "task-1")
    finally:
        await runner.close(1.0)
    assert recorder.calls == []
    await drain(runner, redis_url, recorder)
    assert sorted(recorder.calls) == [("task-1", True), ("task-2", True)]


async def test_a_retryable_failure_is_run_again_and_the_last_attempt_says_so(redis_url: str) -> None:
    runner = runner_for(redis_url, retries=2, retry_delay=0)
    recorder = Recorder(fail=5)
    try:
        await runner.submit(object(), "task-1")
    finally:
        await runner.close(1.0)
    await drain(runner, redis_url, recorder)
    # Two RetryTask failures, then the third and last attempt runs with last_attempt=True.
    assert recorder.calls == [("task-1", False), ("task-1", False), ("task-1", True)]


async def test_a_task_that_succeeds_on_a_retry_is_not_run_again(redis_url: str) -> None:
    runner = runner_for(redis_url, retries=3, retry_delay=0)
    recorder = Recorder(fail=1)
    try:
        await runner.submit(object(), "task-1")
    finally:
        await runner.close(1.0)
    await drain(runner, redis_url, recorder)
    assert recorder.calls == [("task-1", False), ("task-1", False)]


async def test_the_job_carries_the_task_name_workers_register(redis_url: str) -> None:
    job = runner_for(redis_url).job(object(), Recorder())
    assert job.__name__ == JOB_NAME


async def test_submit_with_redis_down_is_a_503_within_the_timeout(redis_server: RedisServer) -> None:
    runner = DocketRunner(redis_server.url, name=f"test-{uuid.uuid4().hex[:8]}", retries=0, timeout=1.0)
    try:
        await runner.submit(object(), "before")
        redis_server.stop()
        started = time.monotonic()
        with pytest.raises(MCPError) as raised:
            await runner.submit(object(), "during")
        assert time.monotonic() - started < 3.0
        assert (raised.value.code, raised.value.http_status) == (-32000, 503)
        assert "task queue" in raised.value.message
        redis_server.start()
        await runner.submit(object(), "after")
    finally:
        await runner.close(1.0)
    recorder = Recorder()
    await drain(runner, redis_server.url, recorder)
    # Redis restarted empty (no persistence): only the task queued after it is there.
    assert recorder.calls == [("after", True)]


def test_options_are_checked_at_construction() -> None:
    for options, message in (
        ({"retries": -1}, "retries"),
        ({"concurrency": 0}, "concurrency"),
        ({"name": ""}, "name"),
        ({"timeout": 0}, "timeout"),
    ):
        with pytest.raises(ValueError, match=message):
            DocketRunner("redis://127.0.0.1:6379/0", **options)


async def test_a_web_worker_starts_with_redis_down_and_queues_once_it_is_back(redis_server: RedisServer) -> None:
    from mcp_asgi import MCPServer
    from mcp_asgi.redis import RedisBackend

    runner = DocketRunner(name=f"test-{uuid.uuid4().hex[:8]}", retries=0, timeout=1.0)
    server = MCPServer("t", backend=RedisBackend(redis_server.url), state_secret="s" * 32, task_runner=runner)
    redis_server.stop()
    try:
        started = time.monotonic()
        await runner.start(server)  # the lifespan goes on: no exception, no hang
        with pytest.raises(MCPError) as raised:
            await runner.submit(server, "during")
        assert raised.value.http_status == 503
        assert time.monotonic() - started < 4.0
        redis_server.start()
        await runner.submit(server, "after")
    finally:
        await runner.close(1.0)
    recorder = Recorder()
    await drain(runner, redis_server.url, recorder)
    assert recorder.calls == [("after", True)]


async def test_a_server_whose_tasks_are_in_memory_is_refused_with_what_to_set(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    from mcp_asgi import MCPServer

    monkeypatch.delenv("MCP_ASGI_REDIS_URL", raising=False)
    runner = DocketRunner(redis_url)
    server = MCPServer("t", task_runner=runner)
    with pytest.raises(RuntimeError, match="MCP_ASGI_REDIS_URL"):
        await runner.start(server)
    with pytest.raises(RuntimeError, match="RedisBackend"):
        await runner.work(server)


def test_the_worker_command_says_what_is_wrong_with_its_target(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp_asgi.tasks.docket import main

    assert main(["tests/fixtures/no_such_app.py:mcp"]) == 2
    assert "error:" in capsys.readouterr().err
    # Without Redis the web workers' tasks are out of the worker's sight: one line says what to set.
    monkeypatch.delenv("MCP_ASGI_REDIS_URL", raising=False)
    assert main(["tests/fixtures/tasks_app.py:mcp"]) == 2
    assert "MCP_ASGI_REDIS_URL" in capsys.readouterr().err
