"""`run_task` and the in-process runner against the in-memory backend, without HTTP."""

from __future__ import annotations

import anyio
import pytest

from mcp_asgi import Context, MCPError, MCPServer
from mcp_asgi.tasks.inprocess import InProcessRunner
from mcp_asgi.tasks.runner import RetryTask
from mcp_asgi.tasks.runtime import SHUTDOWN_ERROR, announce, run_task, task_backend
from mcp_asgi.tasks.store import TaskRecord, new_task_id, task_channel

CAPS = {"extensions": {"io.modelcontextprotocol/tasks": {}}, "elicitation": {}}
NAME = {"type": "object", "properties": {"name": {"type": "string"}}}


def server() -> MCPServer:
    mcp = MCPServer("runtime")
    mcp.attempts = 0  # type: ignore[attr-defined]

    @mcp.tool(task=True)
    async def echo(text: str) -> str:
        return text

    @mcp.tool(task=True)
    async def protocol_failure() -> str:
        raise MCPError(-32099, "nope")

    @mcp.tool(task=True, retryable=True)
    async def flaky() -> str:
        mcp.attempts += 1  # type: ignore[attr-defined]
        raise RuntimeError("flaked")

    @mcp.tool(task=True)
    async def crashes() -> str:
        raise RuntimeError("secret detail")

    @mcp.tool(task=True)
    async def asks(ctx: Context) -> str:
        first = await ctx.elicit("first?", NAME, key="early")
        second = await ctx.elicit("second?", NAME)
        return f"{first.content['name']} and {second.content['name']}"

    @mcp.tool(task=True)
    async def sleeps() -> str:
        await anyio.sleep(30)
        return "woke"

    @mcp.tool(task=True)
    async def reports(ctx: Context) -> str:
        await ctx.report_progress(3, 4)
        await anyio.sleep(30)
        return "never"

    return mcp


async def new_task(mcp: MCPServer, tool: str, arguments: dict | None = None, **request: object) -> str:
    record = TaskRecord(
        task_id=new_task_id(),
        principal=None,
        request={
            "tool": tool,
            "arguments": arguments or {},
            "meta": {"io.modelcontextprotocol/clientCapabilities": CAPS},
            "revision": "2026-07-28",
            **request,
        },
    )
    await task_backend(mcp).tasks.create(record)
    return record.task_id


async def status_of(mcp: MCPServer, task_id: str) -> TaskRecord:
    record = await task_backend(mcp).tasks.get(task_id)
    assert record is not None
    return record


async def wait_status(mcp: MCPServer, task_id: str, status: str) -> TaskRecord:
    with anyio.fail_after(5):
        while (record := await status_of(mcp, task_id)).status != status:
            await anyio.sleep(0.01)
    return record


async def test_a_result_completes_the_task_and_is_announced():
    mcp = server()
    task_id = await new_task(mcp, "echo", {"text": "hi"})
    heard = task_backend(mcp).bus.subscribe(task_channel(task_id))
    await run_task(mcp, task_id)
    record = await status_of(mcp, task_id)
    assert record.status == "completed"
    assert record.result == {"content": [{"type": "text", "text": "hi"}]}
    message = await heard.receive()
    assert message["task"]["status"] == "completed"


async def test_errors_fail_the_task_and_tool_errors_complete_it():
    mcp = server()
    failing = await new_task(mcp, "protocol_failure")
    await run_task(mcp, failing)
    record = await status_of(mcp, failing)
    assert record.status == "failed" and record.error == {"code": -32099, "message": "nope"}
    crashing = await new_task(mcp, "crashes")
    await run_task(mcp, crashing)
    record = await status_of(mcp, crashing)
    # An unexpected exception is a tool error result, as in a blocking call.
    assert record.status == "completed" and record.result["isError"] is True
    unknown = await new_task(mcp, "no_such_tool")
    await run_task(mcp, unknown)
    record = await status_of(mcp, unknown)
    assert record.status == "failed" and record.error["code"] == -32602


async def test_a_retryable_tool_raises_retry_until_the_last_attempt():
    mcp = server()
    task_id = await new_task(mcp, "flaky")
    with pytest.raises(RetryTask):
        await run_task(mcp, task_id, last_attempt=False)
    assert (await status_of(mcp, task_id)).status == "working"
    await run_task(mcp, task_id, last_attempt=True)
    record = await status_of(mcp, task_id)
    assert record.status == "completed" and record.result["isError"] is True
    assert mcp.attempts == 2  # type: ignore[attr-defined]
    # A tool not declared retryable fails at once, even on an early attempt.
    crashing = await new_task(mcp, "crashes")
    await run_task(mcp, crashing, last_attempt=False)
    assert (await status_of(mcp, crashing)).status == "completed"


async def test_input_requests_wait_for_answers_and_early_answers_are_reused():
    mcp = server()
    store = task_backend(mcp).tasks
    early = {"early": {"action": "accept", "content": {"name": "Ann"}}}
    task_id = await new_task(mcp, "asks", inputs=early)
    async with anyio.create_task_group() as group:
        group.start_soon(run_task, mcp, task_id)
        record = await wait_status(mcp, task_id, "input_required")
        # The early answer was not asked again; the next key is new.
        assert list(record.input_requests) == ["elicitation_1"]
        assert record.to_wire()["inputRequests"]["elicitation_1"]["params"]["message"] == "second?"
        answered = await store.add_input_responses(
            task_id, {"elicitation_1": {"action": "accept", "content": {"name": "Bo"}}, "stray": {}}
        )
        assert answered is not None
        # Answered but not yet taken: no longer outstanding for the client.
        assert answered.to_wire()["status"] == "working" and answered.to_wire()["inputRequests"] == {}
        await announce(task_backend(mcp), answered)
    record = await status_of(mcp, task_id)
    assert record.status == "completed" and record.result["content"][0]["text"] == "Ann and Bo"


async def test_a_malformed_answer_fails_the_task():
    mcp = server()
    task_id = await new_task(mcp, "asks", inputs={"early": {"action": "accept", "content": {"name": "A"}}})
    async with anyio.create_task_group() as group:
        group.start_soon(run_task, mcp, task_id)
        await wait_status(mcp, task_id, "input_required")
        record = await task_backend(mcp).tasks.add_input_responses(task_id, {"elicitation_1": {"action": "maybe"}})
        await announce(task_backend(mcp), record)
    record = await status_of(mcp, task_id)
    assert record.status == "failed" and record.error["code"] == -32602


async def test_cancel_asked_before_or_during_the_run():
    mcp = server()
    store = task_backend(mcp).tasks
    before = await new_task(mcp, "echo", {"text": "x"})
    await store.request_cancel(before)
    await run_task(mcp, before)
    assert (await status_of(mcp, before)).status == "cancelled"
    during = await new_task(mcp, "sleeps")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(run_task, mcp, during)
            await anyio.sleep(0.05)
            record = await store.request_cancel(during)
            await announce(task_backend(mcp), record)
    assert (await status_of(mcp, during)).status == "cancelled"


async def test_progress_sets_the_status_message():
    mcp = server()
    task_id = await new_task(mcp, "reports")
    async with anyio.create_task_group() as group:
        group.start_soon(run_task, mcp, task_id)
        with anyio.fail_after(5):
            while (await status_of(mcp, task_id)).status_message is None:
                await anyio.sleep(0.01)
        assert (await status_of(mcp, task_id)).status_message == "3/4"
        group.cancel_scope.cancel()


async def test_a_finished_task_is_left_alone():
    mcp = server()
    task_id = await new_task(mcp, "echo", {"text": "once"})
    await run_task(mcp, task_id)
    await run_task(mcp, task_id)
    assert (await status_of(mcp, task_id)).result["content"][0]["text"] == "once"
    await run_task(mcp, "never-created")


async def test_the_runner_bounds_concurrency_and_fails_what_outlives_the_grace():
    mcp = server()
    runner = InProcessRunner(max_concurrency=1)
    await runner.start(mcp)
    first, second = await new_task(mcp, "sleeps"), await new_task(mcp, "echo", {"text": "queued"})
    await runner.submit(mcp, first)
    await runner.submit(mcp, second)
    await anyio.sleep(0.1)
    # One slot: the second waits behind the first.
    assert (await status_of(mcp, second)).status == "working" and len(runner) == 2
    with anyio.fail_after(5):
        await runner.close(0.1)
    for task_id in (first, second):
        record = await status_of(mcp, task_id)
        assert record.status == "failed" and record.error == {"code": -32603, "message": SHUTDOWN_ERROR}
    with pytest.raises(MCPError) as refused:
        await runner.submit(mcp, await new_task(mcp, "echo", {"text": "late"}))
    assert refused.value.http_status == 503


def test_options_are_checked():
    for options in (
        {"task_ttl_ms": 0},
        {"task_ttl_ms": 1.5},
        {"task_poll_interval_ms": 0},
        {"task_shutdown_grace": -1},
    ):
        with pytest.raises(ValueError):
            MCPServer("bad", **options)
    with pytest.raises(ValueError):
        MCPServer("bad").tool(task="sometimes")(lambda: None)
    with pytest.raises(ValueError):
        MCPServer("bad").tool(task=True, task_start="later")(lambda: None)
    with pytest.raises(ValueError):
        InProcessRunner(max_concurrency=0)
    assert MCPServer("no-expiry", task_ttl_ms=None)
