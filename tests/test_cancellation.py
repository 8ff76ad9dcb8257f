"""Cancelling a running call: notifications/cancelled on 2025 sessions, a closed stream on 2026-07-28."""

from __future__ import annotations

import asyncio
import threading

import anyio
import httpx

from mcp_asgi import MCPServer
from tests.conftest import serve
from tests.http_helpers import ACCEPT, initialize, modern_request


def build() -> tuple[MCPServer, dict[str, threading.Event]]:
    mcp = MCPServer("slow")
    events = {"started": threading.Event(), "cancelled": threading.Event()}

    @mcp.tool
    async def wait_forever() -> str:
        """Runs until cancelled."""
        events["started"].set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events["cancelled"].set()
            raise
        return "finished"

    return mcp, events


async def wait_for(event: threading.Event, timeout: float = 5) -> bool:
    with anyio.move_on_after(timeout):
        while not event.is_set():
            await anyio.sleep(0.02)
    return event.is_set()


async def test_notifications_cancelled_stops_a_2025_call():
    mcp, events = build()
    with serve(mcp.http_app()) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            session = await initialize(http)
            headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
            call = {"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"name": "wait_forever"}}
            async with anyio.create_task_group() as group:
                replies: list[httpx.Response] = []

                async def post() -> None:
                    replies.append(await http.post("/mcp", json=call, headers=headers))

                group.start_soon(post)
                assert await wait_for(events["started"])
                cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 41}}
                assert (await http.post("/mcp", json=cancel, headers=headers)).status_code == 202
            assert await wait_for(events["cancelled"])
    # The cancelled call gets no JSON-RPC response, as the spec asks.
    assert replies[0].status_code == 202 and replies[0].content == b""


async def test_closing_the_stream_cancels_a_2026_call():
    mcp, events = build()
    with serve(mcp.http_app()) as base:
        body, headers = modern_request("tools/call", {"name": "wait_forever", "arguments": {}})
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with anyio.create_task_group() as group:

                async def post() -> None:
                    await http.post("/mcp", json=body, headers=headers)

                group.start_soon(post)
                assert await wait_for(events["started"])
                group.cancel_scope.cancel()  # drops the connection mid-call
        assert await wait_for(events["cancelled"])
