"""2025-11-25 SSE polling and resumability on real uvicorn: priming events, ids, Last-Event-ID."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from mcp_asgi import Context, MCPServer
from mcp_asgi.transports.events import InMemoryEventStore
from mcp_asgi.transports.streamable_http import StreamableHTTPEndpoint
from tests.conftest import serve
from tests.http_helpers import ACCEPT, initialize, modern_request


def build_server() -> MCPServer:
    mcp = MCPServer("Resume")

    @mcp.tool
    def add(a: int, b: int) -> int:
        return a + b

    @mcp.tool
    async def steps(n: int, ctx: Context) -> str:
        for done in range(1, n + 1):
            await ctx.report_progress(done, n)
        return f"{n} steps"

    @mcp.tool
    async def poll(n: int, ctx: Context) -> str:
        """Sends one progress event, closes its stream, then sends the rest and returns."""
        await ctx.report_progress(1, n)
        await ctx.close_sse_stream()
        for done in range(2, n + 1):
            await anyio.sleep(0.05)
            await ctx.report_progress(done, n)
        await anyio.sleep(0.05)
        return f"polled {n}"

    return mcp


def parse_events(text: str) -> list[dict[str, str]]:
    """SSE events as dicts of their fields (`id`, `retry`, `event`, `data`); comments dropped."""
    events = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if fields:
            events.append(fields)
    return events


def messages(events: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [json.loads(event["data"]) for event in events if event.get("data")]


def call(request_id: int, name: str, arguments: dict[str, Any], token: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


class Session:
    def __init__(self, http: httpx.AsyncClient, session_id: str, version: str) -> None:
        self.http = http
        self.headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": version}

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/mcp", json=body, headers=self.headers)

    async def resume(self, last_event_id: str) -> httpx.Response:
        headers = {**self.headers, "accept": "text/event-stream", "last-event-id": last_event_id}
        return await self.http.get("/mcp", headers=headers)


@pytest.fixture
def base_url():
    mcp = build_server()
    app = mcp.http_app()
    with serve(app) as url:
        yield url, app.state.mcp_endpoint


@contextlib.asynccontextmanager
async def open_session(url: str, version: str = "2025-11-25") -> AsyncIterator[Session]:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        yield Session(http, await initialize(http, version=version), version)


async def test_sse_reply_opens_with_a_priming_event_and_ids_every_event(base_url):
    url, _ = base_url
    async with open_session(url) as session:
        response = await session.post(call(1, "steps", {"n": 2}, token="t"))
        assert response.headers["content-type"] == "text/event-stream"
        events = parse_events(response.text)
        priming, *rest = events
        assert (priming["data"], priming["retry"]) == ("", "1000")
        # `{stream}:{seq}`: the stream number depends on how many streams the store saw before.
        stream = priming["id"].partition(":")[0]
        ids = [priming["id"]] + [event["id"] for event in rest]
        assert ids == [f"{stream}:{seq}" for seq in range(4)]
        assert [m.get("method") for m in messages(rest)] == ["notifications/progress"] * 2 + [None]
        assert messages(rest)[-1]["result"]["content"][0]["text"] == "2 steps"


async def test_a_closed_stream_resumes_with_the_rest_and_the_result(base_url):
    url, _ = base_url
    async with open_session(url) as session:
        response = await session.post(call(7, "poll", {"n": 3}, token="p"))
        cut = parse_events(response.text)
        assert cut[0]["data"] == "" and "retry" in cut[0]
        assert [m["params"]["progress"] for m in messages(cut)] == [1]  # no result: the server closed it

        resumed = await session.resume(cut[-1]["id"])
        assert resumed.status_code == 200
        assert resumed.headers["content-type"] == "text/event-stream"
        rest = [event for event in parse_events(resumed.text) if "data" in event]
        # The resumed events continue the numbering of the stream that was cut.
        stream, _, last = cut[-1]["id"].rpartition(":")
        assert [event["id"] for event in rest] == [f"{stream}:{int(last) + n}" for n in (1, 2, 3)]
        received = messages(rest)
        assert [m["params"]["progress"] for m in received[:-1]] == [2, 3]
        assert received[-1] == {
            "jsonrpc": "2.0",
            "id": 7,
            "result": {"content": [{"type": "text", "text": "polled 3"}]},
        }

        # The cursor is the client's: resuming from the priming event replays everything after it.
        again = messages(parse_events((await session.resume(cut[0]["id"])).text))
        assert [m.get("params", {}).get("progress") for m in again] == [1, 2, 3, None]


async def test_resuming_replays_only_the_stream_that_was_cut(base_url):
    url, _ = base_url
    async with open_session(url) as session:
        async with anyio.create_task_group() as group:
            replies: dict[int, httpx.Response] = {}

            async def post(request_id: int, token: str) -> None:
                replies[request_id] = await session.post(call(request_id, "poll", {"n": 2}, token=token))

            group.start_soon(post, 1, "first")
            group.start_soon(post, 2, "second")
        first = parse_events(replies[1].text)
        second = parse_events(replies[2].text)
        assert first[0]["id"].rpartition(":")[0] != second[0]["id"].rpartition(":")[0]

        received = messages(parse_events((await session.resume(first[0]["id"])).text))
        assert {m["params"]["progressToken"] for m in received if "params" in m} == {"first"}
        assert [m["id"] for m in received if "result" in m] == [1]


async def test_resume_needs_no_free_standalone_stream(base_url):
    url, _ = base_url
    async with open_session(url) as session:
        cut = parse_events((await session.post(call(1, "poll", {"n": 2}))).text)
        standalone_headers = {**session.headers, "accept": "text/event-stream"}
        async with session.http.stream("GET", "/mcp", headers=standalone_headers) as standalone:
            assert standalone.status_code == 200
            resumed = await session.resume(cut[-1]["id"])
            assert resumed.status_code == 200
            assert messages(parse_events(resumed.text))[-1]["result"]["content"][0]["text"] == "polled 2"


async def test_unknown_last_event_id_is_a_bad_request_not_a_lost_session(base_url):
    url, _ = base_url
    async with open_session(url) as session:
        for bogus in ("nope", "999:0", "x:y"):
            response = await session.resume(bogus)
            assert response.status_code == 400
            assert "Last-Event-ID" in response.json()["error"]["message"]
        # An id past the stream's newest event is made up, too.
        cut = parse_events((await session.post(call(1, "poll", {"n": 2}))).text)
        stream = cut[0]["id"].rpartition(":")[0]
        assert (await session.resume(f"{stream}:99")).status_code == 400
        assert (await session.post(call(2, "add", {"a": 1, "b": 2}))).status_code == 200

        async with open_session(url) as other:
            assert (await other.resume(cut[0]["id"])).status_code == 400  # another session's stream


async def test_deleting_the_session_forgets_its_streams(base_url):
    url, endpoint = base_url
    async with open_session(url) as session:
        cut = parse_events((await session.post(call(1, "steps", {"n": 1}, token=1))).text)
        assert len(endpoint.events) == 1
        assert (await session.http.delete("/mcp", headers=session.headers)).status_code == 200
        assert len(endpoint.events) == 0
        assert (await session.resume(cut[0]["id"])).status_code == 404


@pytest.mark.parametrize("version", ["2025-06-18", "2025-03-26"])
async def test_older_sessions_stream_without_ids_and_do_not_poll(base_url, version):
    url, endpoint = base_url
    async with open_session(url, version) as session:
        events = parse_events((await session.post(call(1, "steps", {"n": 2}, token="t"))).text)
        assert not any("id" in event or "retry" in event for event in events)
        assert [m.get("method") for m in messages(events)] == ["notifications/progress"] * 2 + [None]
        assert messages(events)[-1]["result"]["content"][0]["text"] == "2 steps"
        # close_sse_stream does nothing here: the result arrives on the POST's own stream.
        polled = messages(parse_events((await session.post(call(2, "poll", {"n": 2}, token="t"))).text))
        assert polled[-1]["result"]["content"][0]["text"] == "polled 2"
        assert len(endpoint.events) == 0


async def test_modern_streams_carry_no_ids(base_url):
    url, endpoint = base_url
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        body, headers = modern_request(
            "tools/call", {"name": "poll", "arguments": {"n": 2}, "_meta": {"progressToken": "m"}}
        )
        events = parse_events((await http.post("/mcp", json=body, headers=headers)).text)
        assert not any("id" in event or "retry" in event for event in events)
        assert messages(events)[-1]["result"]["content"][0]["text"] == "polled 2"
        assert len(endpoint.events) == 0


async def test_plain_json_replies_are_unchanged(base_url):
    url, endpoint = base_url
    async with open_session(url) as session:
        response = await session.post(call(1, "add", {"a": 1, "b": 2}))
        assert response.headers["content-type"] == "application/json"
        assert response.json()["result"]["content"] == [{"type": "text", "text": "3"}]
        assert len(endpoint.events) == 0


def test_retry_interval_is_checked_and_configurable():
    with pytest.raises(ValueError, match="sse_retry_interval"):
        StreamableHTTPEndpoint(build_server(), sse_retry_interval=-1)
    assert StreamableHTTPEndpoint(build_server(), sse_retry_interval=2.5).sse_retry_ms == 2500


async def test_in_memory_store_is_bounded():
    store = InMemoryEventStore(max_events_per_stream=3, retention=0, undelivered_retention=60)
    stream = await store.open_stream("s")
    ids = [await store.append(stream, {"n": n}) for n in range(5)]
    assert await store.read("s", ids[0], 0) is None  # events after it were dropped
    replay = await store.read("s", ids[2], 0)
    assert replay is not None and [e.message for e in replay.events] == [{"n": 3}, {"n": 4}]
    await store.end_stream(stream, delivered=False)
    await store.open_stream("s")  # sweeps: the ended stream waits for its client
    delivered = await store.read("s", ids[3], 0)  # reading its end delivers it...
    assert delivered is not None and [e.message for e in delivered.events] == [{"n": 4}]
    await store.open_stream("s")  # ...and with retention=0 the next sweep forgets it
    assert await store.read("s", ids[3], 0) is None

    # What happens when the store is full: tests/test_bounds_buffers.py.


async def test_reader_waits_for_live_events_and_stops_when_forgotten():
    store = InMemoryEventStore()
    stream = await store.open_stream("s")
    priming = await store.append(stream, None)
    assert priming == f"{stream}:0"
    async with anyio.create_task_group() as group:
        got: list[Any] = []

        async def read() -> None:
            got.append(await store.read("s", priming, 5))
            got.append(await store.read("s", got[0].events[-1].event_id, 5))

        group.start_soon(read)
        await anyio.sleep(0.01)
        await store.append(stream, {"live": True})
        await anyio.sleep(0.01)
        await store.forget_session("s")
    assert [e.message for e in got[0].events] == [{"live": True}]
    assert got[1] is None
