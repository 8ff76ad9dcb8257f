"""Helpers for the tasks extension's tests: a server with task tools, and a raw 2026-07-28 client."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import httpx

from mcp_asgi import Context, MCPError, MCPServer, ToolError
from tests.http_helpers import modern_request

TASKS = "io.modelcontextprotocol/tasks"
DECLARED = {"extensions": {TASKS: {}}, "elicitation": {}}
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


class Probe:
    """What the tools saw, readable from the test's thread (uvicorn runs in another)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.release = threading.Event()


def build(probe: Probe | None = None, **options: Any) -> MCPServer:
    probe = probe if probe is not None else Probe()
    mcp = MCPServer("tasks", **options)

    @mcp.tool(task=True)
    async def compute(seconds: float = 0.0, label: str = "done") -> str:
        """Sleeps, then answers."""
        await anyio.sleep(seconds)
        return f"{label} after {seconds:g}s"

    @mcp.tool(task="required")
    async def only_task() -> str:
        return "ran as a task"

    @mcp.tool(task=True)
    async def ask_name(ctx: Context) -> str:
        answer = await ctx.elicit("Your name?", NAME_SCHEMA, key="name")
        return f"Hello, {(answer.content or {}).get('name')}!"

    @mcp.tool(task=True)
    async def blocker() -> str:
        probe.started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            probe.cancelled.set()
            raise
        return "not cancelled"

    @mcp.tool(task=True)
    async def tool_error() -> str:
        raise ToolError("it went wrong")

    @mcp.tool(task=True)
    async def protocol_error() -> str:
        raise MCPError(-32001, "a protocol failure", {"why": "testing"})

    @mcp.tool(task=True)
    async def with_progress(ctx: Context) -> str:
        await ctx.report_progress(1, 2, "halfway there")
        await ctx.info("a log line a task does not send")
        probe.started.set()
        await anyio.to_thread.run_sync(probe.release.wait, 5)
        return "finished"

    @mcp.tool(task=True, task_start="manual")
    async def maybe_task(ctx: Context, big: bool = False) -> str:
        """Asks first (MRTR, in the request), then becomes a task only for big jobs."""
        answer = await ctx.elicit("Your name?", NAME_SCHEMA, key="who")
        switched = ctx.run_as_task() if big else False
        return f"{(answer.content or {}).get('name')}: task={switched}, task_id={ctx.task_id is not None}"

    @mcp.tool
    def plain() -> str:
        return "plain"

    return mcp


class RawClient:
    """2026-07-28 requests over httpx; `declare` puts the tasks extension in every request's `_meta`.

    Either way the client declares elicitation.
    """

    def __init__(
        self, http: httpx.AsyncClient, url: str, *, declare: bool = True, authorization: str | None = None
    ) -> None:
        self.http = http
        self.url = url
        self.declare = declare
        self.authorization = authorization
        self.next_id = 1

    def message(self, method: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        params = dict(params)
        capabilities = DECLARED if self.declare else {"elicitation": {}}
        params["_meta"] = {"io.modelcontextprotocol/clientCapabilities": capabilities}
        self.next_id += 1
        body, headers = modern_request(method, params, request_id=self.next_id)
        if "taskId" in params:
            headers["mcp-name"] = str(params["taskId"])
        if self.authorization is not None:
            headers["authorization"] = self.authorization
        return body, headers

    async def send(self, method: str, params: dict[str, Any]) -> httpx.Response:
        body, headers = self.message(method, params)
        return await self.http.post(self.url, json=body, headers=headers)

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The JSON-RPC reply (with `result` or `error`)."""
        return (await self.send(method, params)).json()

    async def result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = await self.rpc(method, params)
        assert "result" in reply, reply
        return reply["result"]

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.result("tools/call", {"name": name, "arguments": arguments or {}})

    async def wait_for(self, task_id: str, *statuses: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll `tasks/get` until the task is in one of `statuses`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            task = await self.result("tasks/get", {"taskId": task_id})
            if task["status"] in statuses:
                return task
            assert time.monotonic() < deadline, f"task stayed {task['status']}: {task}"
            await anyio.sleep(0.02)
