"""Legacy HTTP+SSE on two real uvicorn workers sharing one Redis: a POST to either reaches the stream."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import redis.asyncio
from mcp import Client
from mcp.client.sse import sse_client

from mcp_asgi.redis import RedisBackend
from mcp_asgi.server import MCPApp
from mcp_asgi.transports.sse import build_sse_routes
from tests.conftest import serve
from tests.redis_workers import new_backends, with_backend
from tests.servers import build_server
from tests.test_sse import INITIALIZE, open_stream


def sse_app(backend: RedisBackend) -> Any:
    """One worker's legacy SSE app on `backend` (what `http_app(transport="sse", backend=...)` will build)."""
    server = build_server()

    @server.tool
    async def wait() -> str:
        await anyio.sleep(30)
        return "waited"

    _, routes = build_sse_routes(server, "/sse", "/messages/", backend=backend, keepalive_interval=0.5)
    return with_backend(MCPApp(routes=routes, lifespan=server._lifespan), backend)


@contextlib.contextmanager
def two_workers(url: str) -> Iterator[tuple[str, str]]:
    first, second = new_backends(url, 2)
    with serve(sse_app(first)) as one, serve(sse_app(second)) as two:
        yield one, two


def call(request_id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def test_posts_alternating_between_workers_all_reach_the_stream(redis_url: str) -> None:
    with two_workers(redis_url) as (one, two):
        async with httpx.AsyncClient(timeout=10) as http, open_stream(http, f"{one}/sse") as events:
            event, endpoint = await events.next()
            assert event == "endpoint"
            workers = itertools.cycle([two, one])

            async def post(body: dict[str, Any]) -> httpx.Response:
                return await http.post(f"{next(workers)}{endpoint}", json=body)

            assert (await post(INITIALIZE)).status_code == 202  # on worker two: forwarded
            assert (await events.message())["result"]["protocolVersion"] == "2024-11-05"
            assert (await post({"jsonrpc": "2.0", "method": "notifications/initialized"})).status_code == 202
            for n in range(2, 8):
                assert (await post(call(n, "add", {"a": n, "b": 1}))).status_code == 202
                answer = await events.message()
                assert (answer["id"], answer["result"]["content"][0]["text"]) == (n, str(n + 1))
            # Both workers' POSTs meet in one conversation: a second request 9 is refused while the first runs...
            assert (await post(call(9, "wait", {}))).status_code == 202
            assert (await post(call(9, "add", {"a": 1, "b": 1}))).status_code == 202
            refused = await events.message()
            assert refused["id"] == 9 and "already in flight" in refused["error"]["message"]
            # ...and notifications/cancelled posted to either worker ends it, so the id is free again.
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
            assert (await post(cancel)).status_code == 202
            for _ in range(50):
                assert (await post(call(9, "add", {"a": 4, "b": 5}))).status_code == 202
                answer = await events.message()
                if "result" in answer:
                    break
                assert "already in flight" in answer["error"]["message"]  # the cancel is still on its way
            assert answer["result"]["content"][0]["text"] == "9"


async def test_a_post_for_a_stream_nobody_holds_is_404_on_every_worker(redis_url: str) -> None:
    first, second = new_backends(redis_url, 2)
    with serve(sse_app(first)) as one, serve(sse_app(second)) as two:
        raw = redis.asyncio.Redis.from_url(redis_url)
        async with httpx.AsyncClient(timeout=10) as http:
            async with open_stream(http, f"{one}/sse") as events:
                _, endpoint = await events.next()
                assert (await http.post(f"{two}{endpoint}", json=INITIALIZE)).status_code == 202
            # The worker learns of the disconnect in its own time; it deletes the record last.
            key = f"{first.prefix}session:{endpoint.rpartition('=')[2]}"
            with anyio.fail_after(5):
                while await raw.exists(key):
                    await anyio.sleep(0.02)
            await raw.aclose()
            # The stream closed: nobody holds it, on either worker.
            for worker in (one, two):
                response = await http.post(f"{worker}{endpoint}", json=INITIALIZE)
                assert response.status_code == 404, worker
                assert "Session not found" in response.json()["error"]["message"]
            for worker in (one, two):
                response = await http.post(f"{worker}/messages/?session_id=nope", json=INITIALIZE)
                assert response.status_code == 404


class AlternatingPosts(httpx2.AsyncBaseTransport):
    """Sends every other POST to the other worker, as a round-robin load balancer without stickiness would."""

    def __init__(self, ports: tuple[int, int]) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.ports = ports
        self.posts = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            self.posts += 1
            request.url = request.url.copy_with(port=self.ports[self.posts % 2])
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_official_client_works_with_posts_spread_over_two_workers(redis_url: str) -> None:
    with two_workers(redis_url) as (one, two):
        transport = AlternatingPosts((httpx.URL(one).port or 0, httpx.URL(two).port or 0))

        # The official client speaks httpx2 (its own fork of httpx).
        def factory(headers: Any = None, timeout: Any = None, auth: Any = None) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, transport=transport)

        async with Client(sse_client(f"{one}/sse", httpx_client_factory=factory), mode="legacy") as client:
            for n in range(4):
                result = await client.call_tool("add", {"a": n, "b": 10})
                assert result.content[0].text == str(n + 10)
            assert {tool.name for tool in (await client.list_tools()).tools} >= {"add", "slow_steps"}
        assert transport.posts >= 6


async def test_a_malformed_forwarded_message_is_ignored_and_the_stream_goes_on(redis_url: str) -> None:
    first, second = new_backends(redis_url, 2)
    with serve(sse_app(first)) as one, serve(sse_app(second)) as two:
        raw = redis.asyncio.Redis.from_url(redis_url)
        async with httpx.AsyncClient(timeout=10) as http, open_stream(http, f"{one}/sse") as events:
            _, endpoint = await events.next()
            session_id = endpoint.rpartition("=")[2]
            for junk in [b'{"message": [1, 2]}', b'{"message": {"jsonrpc": "1.0"}}', b"{}"]:
                assert await raw.publish(f"{first.prefix}sse:{session_id}", junk) == 1
            assert (await http.post(f"{two}{endpoint}", json=INITIALIZE)).status_code == 202
            assert (await events.message())["id"] == 1
        await raw.aclose()
