"""The 2025 session path touches its store once per request: one read, and no write unless something changed."""

from __future__ import annotations

from typing import Any

import httpx

from mcp_asgi import MCPServer
from mcp_asgi.transports.sessions import InMemorySessionStore
from tests.conftest import serve

ACCEPT = "application/json, text/event-stream"


class CountingStore(InMemorySessionStore):
    """The in-memory store, noting every operation the transport asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in {"create", "get", "update", "subscribe", "unsubscribe", "subscribed", "delete", "alive"}:
            super().__getattribute__("calls").append(name)
        return value


def server() -> MCPServer:
    mcp = MCPServer("traffic")

    @mcp.tool
    def echo(text: str) -> str:
        return text

    return mcp


def post(base: str, message: dict[str, Any], session: str | None = None) -> httpx.Response:
    headers = {"accept": ACCEPT, "mcp-protocol-version": "2025-11-25"}
    if session is not None:
        headers["mcp-session-id"] = session
    return httpx.post(f"{base}/mcp", json=message, headers=headers)


def test_a_tool_call_reads_the_session_once_and_writes_nothing() -> None:
    store = CountingStore()
    with serve(server().http_app(session_store=store)) as base:
        initialize = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        session = post(base, initialize).headers["mcp-session-id"]
        assert post(base, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session).status_code == 202
        assert "update" in store.calls  # the control: a change (initialized) is written

        for request_id in (1, 2):
            store.calls.clear()
            call = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call"}
            call["params"] = {"name": "echo", "arguments": {"text": "hi"}}
            answer = post(base, call, session)
            assert answer.status_code == 200
            assert answer.json()["result"]["content"] == [{"type": "text", "text": "hi"}]
            assert store.calls == ["get"]

        store.calls.clear()
        assert post(base, {"jsonrpc": "2.0", "id": 3, "method": "ping"}, session).status_code == 200
        assert store.calls == ["get"]
