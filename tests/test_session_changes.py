"""Session changes go through the store field by field: nothing relies on changing the record `get` returned."""

from __future__ import annotations

import anyio
import httpx

from mcp_asgi import InMemorySessionStore
from tests.conftest import serve
from tests.http_helpers import ACCEPT, initialize
from tests.test_notifications import Frames, build

VERSION = "2025-11-25"


async def post(http: httpx.AsyncClient, url: str, session_id: str, method: str, params: dict) -> dict:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": VERSION}
    response = await http.post(url, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_subscribe_sent_after_the_get_stream_opened_reaches_that_stream() -> None:
    with serve(build().http_app(json_response=True)) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, url, VERSION)
            headers = {"accept": "text/event-stream", "mcp-session-id": session_id, "mcp-protocol-version": VERSION}
            async with http.stream("GET", url, headers=headers) as stream:
                assert stream.status_code == 200
                frames = Frames(stream)
                async with anyio.create_task_group() as group:
                    group.start_soon(frames.pump)
                    assert (await post(http, url, session_id, "resources/subscribe", {"uri": "data://watched"}))[
                        "result"
                    ] == {}
                    await post(
                        http, url, session_id, "tools/call", {"name": "touch", "arguments": {"uri": "data://watched"}}
                    )
                    (updated,) = await frames.take(1, timeout=5)
                    assert updated["method"] == "notifications/resources/updated"
                    assert updated["params"] == {"uri": "data://watched"}
                    await post(http, url, session_id, "resources/unsubscribe", {"uri": "data://watched"})
                    await post(
                        http, url, session_id, "tools/call", {"name": "touch", "arguments": {"uri": "data://watched"}}
                    )
                    # A list change after it: the next frame must be that, not a second update.
                    await post(http, url, session_id, "tools/call", {"name": "add_prompt", "arguments": {}})
                    (after,) = await frames.take(1, timeout=5)
                    assert after["method"] == "notifications/prompts/list_changed"
                    group.cancel_scope.cancel()


async def test_log_level_and_initialized_are_stored_by_field() -> None:
    store = InMemorySessionStore()
    with serve(build().http_app(session_store=store, json_response=True)) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, url, VERSION)
            assert (await post(http, url, session_id, "logging/setLevel", {"level": "error"}))["result"] == {}
    record = await store.get(session_id)
    assert (record.log_level, record.initialized, record.protocol_version) == ("error", True, VERSION)
    assert record.client_info == {"name": "t", "version": "0"}
