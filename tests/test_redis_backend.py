"""RedisBackend: one pool per worker opened in start() and closed in close(); Redis outages are fast 503s."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from mcp_asgi import SessionRecord
from mcp_asgi.backend import InMemoryBackend
from mcp_asgi.bus import LocalBus
from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.redis import RedisBackend
from tests.redis_server import RedisServer


def backend_for(url: str, **options: Any) -> RedisBackend:
    # The Redis bus is another module's; these tests are about the store and the pool.
    return RedisBackend(url, prefix=f"test-{uuid.uuid4().hex[:8]}:", bus=LocalBus(), **options)


async def unavailable_within(seconds: float, operation: Callable[[], Awaitable[Any]]) -> MCPError:
    started = time.monotonic()
    with pytest.raises(MCPError) as raised:
        await operation()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f} s"
    assert (raised.value.code, raised.value.http_status) == (-32000, 503)
    assert "unavailable" in raised.value.message.lower()
    return raised.value


async def test_redis_going_away_gives_fast_503s_and_service_resumes_when_it_is_back(redis_server: RedisServer) -> None:
    backend = backend_for(redis_server.url, timeout=1.0)
    await backend.start()
    sessions = backend.sessions
    try:
        await sessions.create(SessionRecord("before"))
        redis_server.stop()
        for operation in (
            lambda: sessions.get("before"),
            lambda: sessions.create(SessionRecord("during")),
            lambda: sessions.update("before", log_level="debug"),
            lambda: sessions.subscribe("before", "data://a"),
            lambda: sessions.unsubscribe("before", "data://a"),
            lambda: sessions.subscribed("before", "data://a"),
            lambda: sessions.delete("before"),
        ):
            await unavailable_within(1.5, operation)
        redis_server.start()
        # Same port, empty (no persistence): the old session is gone, new ones work at once.
        assert await sessions.get("before") is None
        await sessions.create(SessionRecord("after"))
        assert (await sessions.get("after")).session_id == "after"
    finally:
        await backend.close()


async def test_a_hung_redis_is_a_503_after_the_timeout_not_a_hang(redis_server: RedisServer) -> None:
    backend = backend_for(redis_server.url, timeout=0.5)
    await backend.start()
    try:
        await backend.sessions.create(SessionRecord("s1"))
        redis_server.pause()
        try:
            error = await unavailable_within(1.5, lambda: backend.sessions.get("s1"))
            assert "0.5 s" in error.message
        finally:
            redis_server.resume()
        assert (await backend.sessions.get("s1")).session_id == "s1"
    finally:
        await backend.close()


async def test_one_bounded_pool_serves_every_concurrent_call(redis_url: str) -> None:
    import redis.asyncio

    backend = backend_for(redis_url, max_connections=3)
    await backend.start()
    observer = redis.asyncio.Redis.from_url(redis_url)
    try:
        before = len(await observer.client_list())
        await backend.sessions.create(SessionRecord("s1"))
        found: list[Any] = []

        async def read() -> None:
            found.append(await backend.sessions.get("s1"))

        async with anyio.create_task_group() as group:
            for _ in range(60):
                group.start_soon(read)
        assert len(found) == 60 and all(record.session_id == "s1" for record in found)
        assert len(await observer.client_list()) - before <= 3
        await backend.close()
        assert len(await observer.client_list()) == before  # close() released every connection
    finally:
        await backend.close()
        await observer.aclose()


async def test_close_then_start_again(redis_url: str) -> None:
    backend = backend_for(redis_url)
    await backend.start()
    await backend.start()  # already started: nothing more is opened
    await backend.sessions.create(SessionRecord("s1"))
    await backend.close()
    with pytest.raises(RuntimeError, match="not connected"):
        await backend.sessions.get("s1")
    await backend.start()
    try:
        assert (await backend.sessions.get("s1")).session_id == "s1"
    finally:
        await backend.close()


async def test_two_backends_on_one_redis_share_sessions(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    first = RedisBackend(redis_url, prefix=prefix, bus=LocalBus())
    second = RedisBackend(redis_url, prefix=prefix, bus=LocalBus())
    await first.start()
    await second.start()
    try:
        assert first.shared and first.worker_id != second.worker_id
        await first.sessions.create(SessionRecord("s1", principal="user:alice"))
        await second.sessions.subscribe("s1", "data://a")
        assert await first.sessions.subscribed("s1", "data://a")
        assert await second.sessions.delete("s1")
        assert await first.sessions.get("s1") is None
    finally:
        await first.close()
        await second.close()


def test_options_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="`url`"):
        RedisBackend("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="`max_sessions`"):
        RedisBackend(max_sessions=0)
    with pytest.raises(ValueError, match="`idle_timeout`"):
        RedisBackend(idle_timeout=0)
    with pytest.raises(RuntimeError, match="start"):
        RedisBackend().bus  # noqa: B018 - the property is what is tested


async def test_the_in_memory_backend_is_the_one_worker_case() -> None:
    backend = InMemoryBackend()
    await backend.start()
    subscription = backend.bus.subscribe("worker:" + backend.worker_id)
    assert await backend.bus.publish("worker:" + backend.worker_id, {"n": 1}) == 1
    assert await subscription.receive() == {"n": 1}
    await backend.sessions.create(SessionRecord("s1"))
    assert not backend.shared and (await backend.sessions.get("s1")).session_id == "s1"
    await backend.close()
    assert [message async for message in subscription] == []


def test_importing_mcp_asgi_never_imports_redis() -> None:
    code = "import sys, mcp_asgi, mcp_asgi.backend, mcp_asgi.redis; assert 'redis' not in sys.modules, 'redis'"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_over_http_an_outage_is_a_503_and_new_sessions_work_once_redis_is_back(redis_server: RedisServer) -> None:
    import httpx
    import redis.asyncio

    from mcp_asgi import MCPServer
    from mcp_asgi.redis import RedisSessionStore
    from tests.conftest import serve
    from tests.http_helpers import ACCEPT

    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    store = RedisSessionStore(client, prefix="http:", timeout=1.0)
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    with serve(MCPServer("outage").http_app(session_store=store, json_response=True)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            session_id = (await http.post("/mcp", json=init, headers={"accept": ACCEPT})).headers["mcp-session-id"]
            headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
            ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
            assert (await http.post("/mcp", json=ping, headers=headers)).status_code == 200
            redis_server.stop()
            started = time.monotonic()
            for response in (
                await http.post("/mcp", json=ping, headers=headers),
                await http.post("/mcp", json=init, headers={"accept": ACCEPT}),
                await http.delete("/mcp", headers=headers),
            ):
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == -32000
            assert time.monotonic() - started < 3.0
            redis_server.start()
            again = await http.post("/mcp", json=init, headers={"accept": ACCEPT})
            assert again.status_code == 200 and again.headers["mcp-session-id"]
            # Its data went with the old server (no persistence): the old session is unknown, not an error.
            assert (await http.post("/mcp", json=ping, headers=headers)).status_code == 404


async def test_a_get_stream_ends_when_the_store_cannot_say_what_it_subscribed_to(redis_server: RedisServer) -> None:
    import httpx
    import redis.asyncio

    from mcp_asgi.redis import RedisSessionStore
    from tests.conftest import serve
    from tests.http_helpers import initialize, modern_request
    from tests.test_notifications import build

    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    store = RedisSessionStore(client, prefix="get:", timeout=1.0)
    with serve(build().http_app(session_store=store, json_response=True)) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, url)
            headers = {
                "accept": "text/event-stream",
                "mcp-session-id": session_id,
                "mcp-protocol-version": "2025-11-25",
            }
            async with http.stream("GET", url, headers=headers) as stream:
                assert stream.status_code == 200
                redis_server.stop()
                # Raised by a 2026-07-28 call, which needs no session store.
                body, call_headers = modern_request("tools/call", {"name": "touch", "arguments": {"uri": "data://x"}})
                assert (await http.post(url, json=body, headers=call_headers)).status_code == 200
                with anyio.fail_after(5):
                    rest = b"".join([chunk async for chunk in stream.aiter_bytes()])
    assert b"resources/updated" not in rest
