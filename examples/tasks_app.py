"""Tool calls that run as tasks (the io.modelcontextprotocol/tasks extension, 2026-07-28).

    mcp-asgi run examples/tasks_app.py --transport http --port 8000

A client that declares the extension in its request gets a task handle at once and polls
`tasks/get`; any other client gets the usual blocking result. See docs/tasks.md.
"""

from __future__ import annotations

import asyncio

from mcp_asgi import Context, MCPServer

mcp = MCPServer("Reports", task_poll_interval_ms=500)
CONFIRM = {"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}


@mcp.tool(task=True)
async def build_report(quarter: str, ctx: Context, step_seconds: float = 1.0) -> str:
    """Build the quarterly report: a task for clients that declared the extension."""
    for step in range(1, 4):
        # Inside a task this becomes the task's statusMessage.
        await ctx.report_progress(step, 3, f"step {step} of 3")
        await asyncio.sleep(step_seconds)
    return f"Report {quarter}: revenue up, costs down"


@mcp.tool(task="required")
async def delete_archive(name: str, ctx: Context) -> str:
    """Delete an archive once a person confirmed it; only ever runs as a task."""
    # The task waits in `input_required` until the client answers with tasks/update.
    answer = await ctx.elicit(f"Delete the archive {name!r}?", CONFIRM)
    if answer.accepted and (answer.content or {}).get("confirm"):
        return f"Deleted {name}"
    return f"Kept {name}"


@mcp.tool(task=True, task_start="manual")
async def export_rows(rows: int, ctx: Context) -> str:
    """Export rows: small exports answer at once, big ones become a task."""
    if rows > 10_000:
        # Answers the request with a task handle; the function runs again, inside the task.
        ctx.run_as_task()
        await asyncio.sleep(rows / 100_000)
    return f"Exported {rows} rows"


app = mcp.http_app()
