"""Tasks over time: notifications/tasks on subscriptions/listen, TTL expiry, shutdown, 2025 clients."""

from __future__ import annotations

import contextlib
import threading
import time

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError as MCPClientError

from mcp_asgi.tasks.runtime import SHUTDOWN_ERROR, task_backend
from tests.conftest import serve
from tests.tasks_helpers import Probe, RawClient, build
from tests.test_notifications import Frames

SUB = "io.modelcontextprotocol/subscriptionId"


@contextlib.asynccontextmanager
async def listening(client: RawClient, task_ids: list[str]):
    body, headers = client.message("subscriptions/listen", {"notifications": {"taskIds": task_ids}})
    async with client.http.stream("POST", client.url, json=body, headers=headers) as response:
        assert response.headers["content-type"] == "text/event-stream"
        frames = Frames(response)
        async with anyio.create_task_group() as group:
            group.start_soon(frames.pump)
            yield frames
            group.cancel_scope.cancel()


async def test_listen_sends_each_change_of_the_tasks_asked_for():
    with serve(build().http_app()) as base:
        async with httpx.AsyncClient() as http:
            client = RawClient(http, f"{base}/mcp")
            task_id = (await client.call("ask_name"))["taskId"]
            await client.wait_for(task_id, "input_required")
            other = RawClient(http, f"{base}/mcp", authorization="Bearer someone-else")
            theirs = (await other.call("compute", {"seconds": 5}))["taskId"]
            async with listening(client, [task_id, "unknown-task", theirs]) as listen:
                (ack, now) = await listen.take(2, 5)
                assert ack["method"] == "notifications/subscriptions/acknowledged"
                # Only the caller's own, existing tasks are agreed to.
                assert ack["params"]["notifications"] == {"taskIds": [task_id]}
                assert now["method"] == "notifications/tasks"
                assert now["params"]["taskId"] == task_id and now["params"]["status"] == "input_required"
                assert now["params"]["_meta"][SUB] == ack["params"]["_meta"][SUB]
                answer = {"name": {"action": "accept", "content": {"name": "Lin"}}}
                await client.result("tasks/update", {"taskId": task_id, "inputResponses": answer})
                seen = []
                while not seen or seen[-1]["status"] != "completed":
                    (frame,) = await listen.take(1, 5)
                    assert frame["method"] == "notifications/tasks" and frame["params"]["taskId"] == task_id
                    seen.append(frame["params"])
                assert seen[-1]["result"]["content"][0]["text"] == "Hello, Lin!"
            await other.result("tasks/cancel", {"taskId": theirs})


async def test_listen_for_tasks_needs_the_extension_declared():
    with serve(build().http_app()) as base:
        async with httpx.AsyncClient() as http:
            client = RawClient(http, f"{base}/mcp", declare=False)
            body, headers = client.message("subscriptions/listen", {"notifications": {"taskIds": ["x"]}})
            reply = (await http.post(client.url, json=body, headers=headers)).json()
            assert reply["error"]["code"] == -32021
            assert reply["error"]["data"] == {
                "requiredCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}
            }


async def test_an_expired_task_is_not_found():
    with serve(build(task_ttl_ms=300, task_poll_interval_ms=50).http_app()) as base:
        async with httpx.AsyncClient() as http:
            client = RawClient(http, f"{base}/mcp")
            created = await client.call("compute")
            assert created["ttlMs"] == 300 and created["pollIntervalMs"] == 50
            await client.wait_for(created["taskId"], "completed")
            await anyio.sleep(0.4)
            reply = await client.rpc("tasks/get", {"taskId": created["taskId"]})
            assert reply["error"]["code"] == -32602


async def test_shutdown_fails_running_tasks_after_the_grace_period():
    probe = Probe()
    mcp = build(probe, task_shutdown_grace=0.2)
    with serve(mcp.http_app()) as base:
        async with httpx.AsyncClient() as http:
            client = RawClient(http, f"{base}/mcp")
            task_id = (await client.call("blocker"))["taskId"]
            quick = (await client.call("compute", {"seconds": 0.05}))["taskId"]
            assert probe.started.wait(5)
        started = time.monotonic()
    assert time.monotonic() - started < 5, "shutdown waited for the task"
    assert probe.cancelled.is_set()
    record = await task_backend(mcp).tasks.get(task_id)
    assert record is not None and record.status == "failed"
    assert record.error == {"code": -32603, "message": SHUTDOWN_ERROR}
    assert record.status_message == f"Task failed: {SHUTDOWN_ERROR}"
    # A task that finished within the grace period keeps its result.
    finished = await task_backend(mcp).tasks.get(quick)
    assert finished is not None and finished.status == "completed"


async def test_a_task_that_finishes_within_the_grace_period_completes():
    probe = Probe()
    mcp = build(probe, task_shutdown_grace=5.0)
    with serve(mcp.http_app()) as base:
        async with httpx.AsyncClient() as http:
            task_id = (await RawClient(http, f"{base}/mcp").call("with_progress"))["taskId"]
            assert probe.started.wait(5)
        # Released while the server is shutting down (it waits up to 5 s for the task).
        threading.Timer(0.3, probe.release.set).start()
    assert probe.release.is_set()
    record = await task_backend(mcp).tasks.get(task_id)
    assert record is not None and record.status == "completed"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_official_client_gets_blocking_results(mode):
    with serve(build().http_app()) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            result = await client.call_tool("compute", {"seconds": 0, "label": "blocking"})
            assert result.is_error is False and result.content[0].text == "blocking after 0s"
            if mode == "legacy":
                # 2025 sessions know nothing of tasks: even a required-task tool answers as before.
                required = await client.call_tool("only_task", {})
                assert required.content[0].text == "ran as a task"
            else:
                with pytest.raises(MCPClientError) as refused:
                    await client.call_tool("only_task", {})
                assert refused.value.code == -32021


async def test_the_example_app_runs_a_task_and_answers_others_at_once():
    from examples.tasks_app import mcp

    with serve(mcp.http_app()) as base:
        async with httpx.AsyncClient() as http:
            client = RawClient(http, f"{base}/mcp")
            created = await client.call("build_report", {"quarter": "Q3", "step_seconds": 0.01})
            assert created["resultType"] == "task" and created["pollIntervalMs"] == 500
            done = await client.wait_for(created["taskId"], "completed")
            assert done["result"]["content"][0]["text"] == "Report Q3: revenue up, costs down"
            big = await client.call("export_rows", {"rows": 20_000})
            assert big["resultType"] == "task"
            assert (await client.wait_for(big["taskId"], "completed"))["result"]["content"][0]["text"] == (
                "Exported 20000 rows"
            )
            small = await client.call("export_rows", {"rows": 10})
            assert small["resultType"] == "complete" and small["content"][0]["text"] == "Exported 10 rows"


@pytest.mark.parametrize(("ttl_ms", "promised"), [(None, 30_000), (60_000, 30_000), (10_000, 10_000)])
def test_a_task_handle_never_promises_longer_than_the_redis_store_keeps_it(redis_url, ttl_ms, promised):
    from mcp_asgi.redis import RedisBackend

    backend = RedisBackend(redis_url, prefix=f"ttl-cap-{ttl_ms}:")
    backend.tasks.max_ttl = 30.0
    with serve(build(task_ttl_ms=ttl_ms, state_secret="s" * 32).http_app(backend=backend)) as base:

        async def main() -> None:
            async with httpx.AsyncClient() as http:
                client = RawClient(http, f"{base}/mcp")
                created = await client.call("compute", {"seconds": 0})
                assert created["ttlMs"] == promised
                done = await client.wait_for(created["taskId"], "completed")
                assert done["ttlMs"] == promised

        anyio.run(main)
