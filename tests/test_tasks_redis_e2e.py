"""Tasks across real processes sharing one real Redis: web workers, and pydocket worker processes.

- a task created on one uvicorn process is read, answered (`tasks/update`) and cancelled on another;
- with `DocketRunner`, a task runs in the job engine's worker process and completes after the web
  process that created it was killed with SIGKILL; another web process serves the result;
- a `retryable` tool that fails on its first attempt completes on the engine's retry.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.http_helpers import modern_request, sse_messages
from tests.multiworker import ROOT, Workers, worker_env
from tests.redis_server import RedisServer

APP = "tests.fixtures.tasks_app:app"
SERVER_FILE = "tests/fixtures/tasks_app.py:mcp"
CAPABILITIES = {"extensions": {"io.modelcontextprotocol/tasks": {}}, "elicitation": {"form": {}}}
TASKS = {"io.modelcontextprotocol/clientCapabilities": CAPABILITIES}
TERMINAL = ("completed", "failed", "cancelled")

pytestmark = pytest.mark.timeout(60)


async def rpc(http: httpx.AsyncClient, port: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One 2026-07-28 request (declaring the tasks extension) to the worker on `port`; its JSON-RPC reply."""
    body, headers = modern_request(method, {**params, "_meta": dict(TASKS)})
    if method.startswith("tasks/"):
        headers["mcp-name"] = params["taskId"]  # the routing header the spec asks for
    response = await http.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    return sse_messages(response.text)[-1]


async def create(http: httpx.AsyncClient, port: int, tool: str, arguments: dict[str, Any]) -> str:
    reply = await rpc(http, port, "tools/call", {"name": tool, "arguments": arguments})
    assert reply["result"]["resultType"] == "task", reply
    return reply["result"]["taskId"]


async def poll(
    http: httpx.AsyncClient,
    ports: list[int],
    task_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """`tasks/get` on each port in turn until `until(task)` holds; the task."""
    task: dict[str, Any] = {}
    with anyio.move_on_after(timeout):
        for attempt in range(10_000):
            reply = await rpc(http, ports[attempt % len(ports)], "tasks/get", {"taskId": task_id})
            assert "result" in reply, reply
            task = reply["result"]
            if until(task):
                return task
            await anyio.sleep(0.1)
    raise AssertionError(f"task {task_id} never got there: {task}")


def ended(task: dict[str, Any]) -> bool:
    return task["status"] in TERMINAL


def no_keepalive() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0))


@contextmanager
def engine_worker(redis_url: str, queue: str, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m mcp_asgi.tasks.docket tests/fixtures/tasks_app.py:mcp`: the job engine's worker process."""
    log = Path(f"/tmp/mcp-asgi-engine-{os.getpid()}-{queue}-{uuid.uuid4().hex[:6]}.log")
    env = worker_env(redis_url, TASKS_QUEUE=queue, **env)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_asgi.tasks.docket", SERVER_FILE],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        output = log.read_text(errors="replace")
        log.unlink(missing_ok=True)
        killed = process.returncode == -signal.SIGKILL
        assert killed or "Traceback" not in output or "first attempt fails" in output, output[-3000:]


async def test_a_task_is_answered_and_cancelled_on_another_worker_than_the_one_that_created_it(redis_url: str) -> None:
    with Workers(redis_url, count=2, app=APP) as workers:
        first, second = workers.ports
        async with no_keepalive() as http:
            task_id = await create(http, first, "ask_name", {})
            waiting = await poll(http, [second], task_id, lambda task: task["status"] == "input_required")
            [(key, request)] = waiting["inputRequests"].items()
            assert request["method"] == "elicitation/create"
            answer = {"action": "accept", "content": {"name": "Ada"}}
            ack = await rpc(http, second, "tasks/update", {"taskId": task_id, "inputResponses": {key: answer}})
            assert ack["result"]["resultType"] == "complete", ack
            done = await poll(http, [second, first], task_id, ended)
            assert done["status"] == "completed", done
            # The in-process runner: the tool ran in the worker that created the task, and resumed there.
            assert done["result"]["content"][0]["text"] == f"Hello, Ada, from {workers.processes[0].pid}!"

            task_id = await create(http, second, "slow", {"seconds": 30})
            assert (await poll(http, [first], task_id, lambda task: True))["status"] == "working"
            ack = await rpc(http, first, "tasks/cancel", {"taskId": task_id})
            assert ack["result"]["resultType"] == "complete", ack
            cancelled = await poll(http, [first, second], task_id, ended, timeout=10.0)
            assert cancelled["status"] == "cancelled", cancelled
            # Unknown on every worker: the spec's error, not a 500.
            missing = await rpc(http, first, "tasks/get", {"taskId": "no-such-task"})
            assert "error" in missing and missing["error"]["code"] == -32602, missing


async def test_a_job_engine_task_completes_after_the_web_worker_that_created_it_is_killed(redis_url: str) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with Workers(redis_url, count=2, app=APP, TASKS_QUEUE=queue) as workers:
        async with no_keepalive() as http:
            task_id = await create(http, workers.ports[0], "slow", {"seconds": 0.5})
            workers.kill(0)
            # The engine's worker starts only now: the task waited in Redis, not in the dead process.
            with engine_worker(redis_url, queue) as engine:
                done = await poll(http, [workers.ports[1]], task_id, ended)
                assert done["status"] == "completed", done
                assert done["result"]["content"][0]["text"] == f"slept 0.5 in {engine.pid}"


async def test_a_retryable_tool_that_fails_once_completes_on_the_engines_retry(redis_url: str, tmp_path: Path) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "first-attempt"
    with Workers(redis_url, count=1, app=APP, TASKS_QUEUE=queue) as workers, engine_worker(redis_url, queue) as engine:
        async with no_keepalive() as http:
            started = time.monotonic()
            task_id = await create(http, workers.ports[0], "flaky", {"marker": str(marker)})
            done = await poll(http, workers.ports, task_id, ended)
            assert done["status"] == "completed", done
            assert done["result"]["content"][0]["text"] == f"succeeded on a retry in {engine.pid}"
            # The failed first attempt ran in the engine's worker too, and the task never showed it.
            assert marker.read_text() == str(engine.pid)
            assert time.monotonic() - started < 20


async def test_a_job_engine_task_asks_for_input_and_is_cancelled_through_any_web_worker(redis_url: str) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    with Workers(redis_url, count=2, app=APP, TASKS_QUEUE=queue) as workers, engine_worker(redis_url, queue) as engine:
        first, second = workers.ports
        async with no_keepalive() as http:
            task_id = await create(http, first, "ask_name", {})
            waiting = await poll(http, [second], task_id, lambda task: task["status"] == "input_required")
            [key] = waiting["inputRequests"]
            answer = {"action": "accept", "content": {"name": "Grace"}}
            await rpc(http, second, "tasks/update", {"taskId": task_id, "inputResponses": {key: answer}})
            done = await poll(http, [first, second], task_id, ended)
            assert done["result"]["content"][0]["text"] == f"Hello, Grace, from {engine.pid}!", done

            task_id = await create(http, second, "slow", {"seconds": 30})
            await rpc(http, first, "tasks/cancel", {"taskId": task_id})
            cancelled = await poll(http, [first, second], task_id, ended, timeout=10.0)
            assert cancelled["status"] == "cancelled", cancelled


async def test_task_requests_get_a_503_while_redis_is_down_and_work_when_it_is_back(redis_server: RedisServer) -> None:
    with Workers(redis_server.url, count=1, app=APP) as workers:
        port = workers.ports[0]
        async with no_keepalive() as http:
            task_id = await create(http, port, "slow", {"seconds": 30})
            redis_server.stop()
            for method, params in (
                ("tasks/get", {"taskId": task_id}),
                ("tasks/cancel", {"taskId": task_id}),
                ("tasks/update", {"taskId": task_id, "inputResponses": {}}),
            ):
                body, headers = modern_request(method, {**params, "_meta": dict(TASKS)})
                headers["mcp-name"] = task_id
                started = time.monotonic()
                response = await http.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers)
                assert time.monotonic() - started < 5.0
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == -32000
            redis_server.start()
            # Redis came back empty (no persistence): the old task is gone, new ones work at once.
            assert "error" in await rpc(http, port, "tasks/get", {"taskId": task_id})
            again = await create(http, port, "slow", {"seconds": 0.1})
            assert (await poll(http, [port], again, ended))["status"] == "completed"


async def test_the_job_of_a_job_worker_that_died_is_run_by_another(redis_url: str, tmp_path: Path) -> None:
    queue = f"test-{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "started"
    with Workers(redis_url, count=1, app=APP, TASKS_QUEUE=queue) as workers:
        async with no_keepalive() as http:
            with engine_worker(redis_url, queue, TASKS_REDELIVERY="1") as doomed:
                task_id = await create(http, workers.ports[0], "marked", {"marker": str(marker), "seconds": 1.5})
                with anyio.fail_after(10):
                    while not marker.exists():
                        await anyio.sleep(0.05)
                assert marker.read_text() == str(doomed.pid)
                doomed.send_signal(signal.SIGKILL)
                doomed.wait(5)
            with engine_worker(redis_url, queue, TASKS_REDELIVERY="1") as survivor:
                done = await poll(http, workers.ports, task_id, ended)
                assert done["status"] == "completed", done
                # Run again from the start on the other job worker (the tool must be safe to repeat).
                assert done["result"]["content"][0]["text"] == f"finished in {survivor.pid}"
                assert marker.read_text() == str(survivor.pid)
