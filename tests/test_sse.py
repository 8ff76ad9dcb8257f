"""The legacy HTTP+SSE transport on real uvicorn: endpoint URLs under prefixes, POST rules, streaming."""

from __future__ import annotations

import contextlib
import json

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.conftest import serve
from tests.fixtures.procs import CLI_SERVER, http_cli
from tests.servers import build_server

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


class Events:
    """Reads `(event, data)` pairs and comments from an open SSE response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, timeout: float = 5) -> tuple[str, str]:
        event, data = "message", []
        with anyio.fail_after(timeout):
            async for line in self.lines:
                if line == "":
                    if data:
                        return event, "\n".join(data)
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        raise AssertionError("the stream ended")

    async def message(self, timeout: float = 5) -> dict:
        event, data = await self.next(timeout)
        assert event == "message"
        return json.loads(data)


@contextlib.asynccontextmanager
async def open_stream(client: httpx.AsyncClient, url: str):
    async with client.stream("GET", url, headers={"accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        yield Events(response)


@pytest.fixture(scope="module")
def base():
    with serve(build_server().http_app(transport="sse", keepalive_interval=0.2)) as url:
        yield url


async def test_official_client_over_sse_started_by_the_cli():
    with http_cli(CLI_SERVER, "--transport", "sse", "--", "--greeting", "ahoy") as (_, url):
        async with Client(sse_client(f"{url}/sse"), mode="legacy") as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert tools == {"add", "greet", "argv", "noisy", "lifespan_state", "slow"}
            assert (await client.call_tool("add", {"a": 2, "b": 3})).content[0].text == "5"
            assert (await client.call_tool("greet", {"name": "Bo"})).content[0].text == "ahoy, Bo"
            # A long tool does not hold up other messages on the same stream.
            with anyio.fail_after(10):
                async with anyio.create_task_group() as group:
                    group.start_soon(client.call_tool, "slow", {"seconds": 1})
                    await anyio.sleep(0.2)
                    started = anyio.current_time()
                    assert (await client.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"
                    assert anyio.current_time() - started < 0.8


async def test_stream_opens_with_endpoint_event_and_answers_arrive_on_it(base):
    async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
        assert events.response.headers["x-accel-buffering"] == "no"
        assert events.response.headers["cache-control"].startswith("no-cache")
        assert events.response.headers["content-type"].startswith("text/event-stream")
        event, endpoint = await events.next()
        assert event == "endpoint" and endpoint.startswith("/messages/?session_id=")

        posted = await http.post(endpoint, json=INITIALIZE)
        assert posted.status_code == 202
        reply = await events.message()
        assert reply["id"] == 1 and reply["result"]["protocolVersion"] == "2024-11-05"
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(endpoint, json=initialized)).status_code == 202

        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}}
        call["params"]["arguments"]["b"] = 2
        assert (await http.post(endpoint, json=call)).status_code == 202
        result = (await events.message())["result"]
        # 2024-11-05 predates structured output.
        assert result["content"][0]["text"] == "3" and "structuredContent" not in result


async def test_idle_stream_gets_keepalive_comments(base):
    async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
        await events.next()
        with pytest.raises(TimeoutError):
            await events.next(timeout=0.7)
        # How many pings fit in 0.7 s depends on scheduling; that each comment is one does not.
        assert set(events.comments) == {": ping"}, events.comments


async def test_post_errors(base):
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        missing = await http.post("/messages/", json=INITIALIZE)
        assert missing.status_code == 400 and "session_id" in missing.json()["error"]["message"]
        unknown = await http.post("/messages/?session_id=nope", json=INITIALIZE)
        assert unknown.status_code == 404
        async with open_stream(http, "/sse") as events:
            _, endpoint = await events.next()
            bad = await http.post(endpoint, content=b"{not json", headers={"content-type": "application/json"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
            invalid = await http.post(endpoint, json={"jsonrpc": "1.0", "id": 5, "method": "ping"})
            assert invalid.status_code == 400 and invalid.json()["error"]["code"] == -32600
        # The stream closed: its session is gone.
        await anyio.sleep(0.2)
        assert (await http.post(endpoint, json=INITIALIZE)).status_code == 404


async def test_endpoint_url_is_right_under_nested_mounts():
    inner = Starlette(routes=[Mount("/inner", app=build_server().http_app(transport="sse"))])
    outer = Starlette(routes=[Mount("/outer", app=inner)])
    with serve(outer) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/outer/inner/sse") as ev:
            _, endpoint = await ev.next()
            assert endpoint.startswith("/outer/inner/messages/?session_id=")
            assert (await http.post(endpoint, json=INITIALIZE)).status_code == 202
            assert (await ev.message())["id"] == 1
        async with Client(sse_client(f"{base}/outer/inner/sse"), mode="legacy") as client:
            assert (await client.call_tool("add", {"a": 20, "b": 22})).content[0].text == "42"


async def test_endpoint_url_carries_uvicorn_root_path():
    # `--root-path /proxy`: a proxy strips /proxy, so requests arrive without it.
    with http_cli(CLI_SERVER, "--transport", "sse", "--root-path", "/proxy") as (_, url):
        async with httpx.AsyncClient(base_url=url, timeout=10) as http, open_stream(http, "/sse") as events:
            _, endpoint = await events.next()
            assert endpoint.startswith("/proxy/messages/?session_id=")
            stripped = endpoint.removeprefix("/proxy")
            assert (await http.post(stripped, json=INITIALIZE)).status_code == 202
            assert (await events.message())["id"] == 1


async def test_wrong_methods_are_405(base):
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.post("/sse", json=INITIALIZE)).status_code == 405
        assert (await http.get("/messages/")).status_code == 405


def test_sse_app_rejects_streamable_http_options():
    with pytest.raises(ValueError, match="Streamable HTTP only"):
        build_server().http_app(transport="sse", stateless=True)


def test_a_lifespan_that_fails_to_start_answers_503_on_the_sse_stream():
    from contextlib import asynccontextmanager

    import httpx as sync_httpx

    from mcp_asgi import MCPServer
    from tests.conftest import serve

    @asynccontextmanager
    async def broken(server):
        raise RuntimeError("cache is down")
        yield  # pragma: no cover

    with serve(MCPServer("fragile", lifespan=broken).http_app(transport="sse"), lifespan="off") as base:
        response = sync_httpx.get(f"{base}/sse")
    assert response.status_code == 503
    assert "cache is down" in response.json()["error"]["message"]
