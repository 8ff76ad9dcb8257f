"""The official Python client against two workers, its every HTTP request sent to the other one.

Each worker is a real uvicorn serving its own MCPServer, both on one real Redis with one state
secret; the client's transport alternates ports on every request (no stickiness, no keep-alive
to hide behind). Elicitation, sampling and roots on a 2025 session must work as on one worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_asgi.redis import RedisBackend
from tests.conftest import serve
from tests.test_client_requests import MODES, build, on_elicit, on_roots, on_sample


class Alternating(httpx.AsyncBaseTransport):
    """Sends each request to the next port in turn; counts what each port received."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.sent = dict.fromkeys(ports, 0)
        self.turn = 0
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = self.ports[self.turn % len(self.ports)]
        self.turn += 1
        self.sent[port] += 1
        request.url = request.url.copy_with(port=port)
        request.headers["host"] = f"127.0.0.1:{port}"
        request.headers["connection"] = "close"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def two_urls(redis_url: str) -> Iterator[list[str]]:
    prefix = f"sdk-two-{uuid.uuid4().hex[:8]}:"

    def app():
        return build(state_secret="shared", backend=RedisBackend(redis_url, prefix=prefix)).http_app()

    with serve(app()) as one, serve(app()) as two:
        yield [f"{one}/mcp", f"{two}/mcp"]


@pytest.mark.parametrize("mode", MODES)
async def test_the_official_client_round_robin_over_two_workers(two_urls, mode):
    transport = Alternating([urlsplit(url).port for url in two_urls])
    http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10, read=30))
    async with (
        http,
        Client(
            streamable_http_client(two_urls[0], http_client=http),
            mode=mode,
            elicitation_callback=on_elicit,
            sampling_callback=on_sample,
            list_roots_callback=on_roots,
        ) as client,
    ):
        for _ in range(2):  # twice: each call's question and answer land on different workers
            assert (await client.call_tool("greet", {})).content[0].text == "Hello, Alice!"
            assert (await client.call_tool("capital", {})).content[0].text == "model says: Paris"
            assert (await client.call_tool("roots", {})).structured_content == {"result": ["file:///work"]}
        assert (await client.call_tool("two_steps", {})).content[0].text == "Alice likes blue"
    assert min(transport.sent.values()) >= 4, transport.sent
