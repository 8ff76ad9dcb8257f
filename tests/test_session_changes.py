"""Session changes go through the store field by field: nothing relies on changing the record `get` returned."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import anyio
import httpx
import pytest

from mcp_asgi import InMemorySessionStore
from mcp_asgi.redis import RedisSessionStore
from tests.conftest import serve
from tests.http_helpers import ACCEPT, initialize
from tests.test_notifications import Frames, build

VERSION = "2025-11-25"


class Case(NamedTuple):
    store: Any
    # Reads a record back on the test's own loop (a Redis client belongs to the loop that used it).
    read: Callable[[str], Awaitable[Any]]
    # The ids of the stored sessions.
    ids: Callable[[], Awaitable[list[str]]]


@pytest.fixture(params=["memory", "redis"])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "memory":
        store = InMemorySessionStore()

        async def memory_ids() -> list[str]:
            return list(store._records)

        return Case(store, store.get, memory_ids)
    import redis.asyncio

    url, prefix = request.getfixturevalue("redis_url"), f"t-{uuid.uuid4().hex}:"

    async def read(session_id: str) -> Any:
        client = redis.asyncio.Redis.from_url(url, decode_responses=True)
        try:
            return await RedisSessionStore(client, prefix=prefix).get(session_id)
        finally:
            await client.aclose()

    async def ids() -> list[str]:
        client = redis.asyncio.Redis.from_url(url, decode_responses=True)
        try:
            keys = [key async for key in client.scan_iter(f"{prefix}session:*")]
        finally:
            await client.aclose()
        return [key.removeprefix(f"{prefix}session:") for key in keys if not key.endswith(":subscriptions")]

    store = RedisSessionStore(redis.asyncio.Redis.from_url(url, decode_responses=True), prefix=prefix)
    return Case(store, read, ids)


async def post(http: httpx.AsyncClient, url: str, session_id: str, method: str, params: dict) -> dict:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": VERSION}
    response = await http.post(url, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_subscribe_sent_after_the_get_stream_opened_reaches_that_stream(case: Case) -> None:
    with serve(build().http_app(json_response=True, session_store=case.store)) as base:
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


async def test_log_level_and_initialized_are_stored_by_field(case: Case) -> None:
    with serve(build().http_app(session_store=case.store, json_response=True)) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, url, VERSION)
            assert (await post(http, url, session_id, "logging/setLevel", {"level": "error"}))["result"] == {}
    record = await case.read(session_id)
    assert (record.log_level, record.initialized, record.protocol_version) == ("error", True, VERSION)
    assert record.client_info == {"name": "t", "version": "0"}


async def test_legacy_sse_sessions_store_their_changes_by_field(case: Case) -> None:
    from mcp import Client
    from mcp.client.sse import sse_client

    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        seen.append(message)

    with serve(build().http_app(transport="sse", session_store=case.store)) as base:
        async with Client(sse_client(f"{base}/sse"), mode="legacy", message_handler=on_message) as client:
            await client.session.set_logging_level("critical")
            await client.session.subscribe_resource("data://watched")
            await client.call_tool("touch", {"uri": "data://watched"})
            with anyio.move_on_after(5):
                while not seen:
                    await anyio.sleep(0.02)
            (session_id,) = await case.ids()
            record = await case.read(session_id)
    methods = [getattr(getattr(m, "root", m), "method", None) for m in seen]
    assert methods == ["notifications/resources/updated"]
    assert (record.log_level, record.initialized, record.subscriptions) == ("critical", True, {"data://watched"})
