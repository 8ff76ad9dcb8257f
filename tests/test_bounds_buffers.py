"""What clients can grow stays bounded: the event store, listen filters, full GET streams, idle sessions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import anyio
import httpx
import pytest

from mcp_asgi import Context, MCPServer
from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.transports.events import InMemoryEventStore
from mcp_asgi.transports.sessions import InMemorySessionStore
from tests.conftest import serve
from tests.http_helpers import ACCEPT, client_for, initialize, modern_request
from tests.test_notifications import listening
from tests.test_sse import open_stream
from tests.test_sse_resume import build_server, call, messages, open_session, parse_events


def size_of(message: dict[str, Any]) -> int:
    return len(json.dumps(message, separators=(",", ":")))


def blob(n: int) -> dict[str, Any]:
    """A message of exactly `n` bytes of JSON."""
    message = {"x": ""}
    message["x"] = "a" * (n - size_of(message))
    return message


# The event store: bytes per stream and in total; live streams are never evicted.
async def test_a_stream_keeps_at_most_max_bytes_per_stream_dropping_its_oldest_events():
    store = InMemoryEventStore(max_bytes_per_stream=300, max_total_bytes=10_000)
    stream = await store.open_stream("s")
    assert stream is not None
    ids = [await store.append(stream, blob(100)) for _ in range(5)]
    assert store.total_bytes == 300
    assert await store.read("s", ids[0], 0) is None  # the event after it was dropped
    replay = await store.read("s", ids[1], 0)
    assert replay is not None and len(replay.events) == 3


async def test_an_event_larger_than_a_stream_may_hold_makes_the_stream_unresumable():
    store = InMemoryEventStore(max_bytes_per_stream=300, max_total_bytes=10_000)
    stream = await store.open_stream("s")
    first = await store.append(stream, blob(100))
    assert await store.append(stream, blob(301)) is None
    # Forgotten whole, never resumed with the event missing; its bytes are returned.
    assert await store.read("s", first, 0) is None
    assert len(store) == 0 and store.total_bytes == 0


async def test_when_the_store_is_full_ended_streams_go_first():
    store = InMemoryEventStore(max_bytes_per_stream=400, max_total_bytes=1000)
    live = await store.open_stream("alice")
    live_first = await store.append(live, blob(300))
    ended = await store.open_stream("bob")
    await store.append(ended, blob(400))
    await store.end_stream(ended, delivered=False)
    new = await store.open_stream("carol")
    assert await store.append(new, blob(300)) is not None  # 1000 bytes: fits
    assert await store.append(new, blob(100)) is not None  # bob's ended stream made room
    assert store.total_bytes == 700 and len(store) == 2
    replay = await store.read("alice", live_first, 0)
    assert replay is not None and replay.events == []  # alice's live stream is whole


async def test_when_every_stream_is_live_a_new_one_is_not_recorded():
    store = InMemoryEventStore(max_streams=2)
    first = await store.open_stream("a")
    priming = await store.append(first, None)
    await store.open_stream("b")
    # Before: the oldest live stream ("a") was dropped to make room.
    assert await store.open_stream("c") is None
    assert len(store) == 2 and await store.read("a", priming, 0) is not None


async def test_a_live_stream_that_no_longer_fits_is_forgotten_not_its_neighbour():
    store = InMemoryEventStore(max_bytes_per_stream=600, max_total_bytes=1000)
    alice = await store.open_stream("alice")
    alice_first = await store.append(alice, blob(600))
    bob = await store.open_stream("bob")
    bob_priming = await store.append(bob, None)
    await store.append(bob, blob(300))
    # Bob's own older event goes first...
    assert await store.append(bob, blob(400)) is not None
    assert await store.read("bob", bob_priming, 0) is None
    # ...and when even that is not enough, bob's stream stops being recorded; alice's stays.
    assert await store.append(bob, blob(500)) is None
    assert await store.read("alice", alice_first, 0) is not None
    assert store.total_bytes == 600


def test_the_byte_limits_are_checked():
    with pytest.raises(ValueError, match="max_bytes_per_stream"):
        InMemoryEventStore(max_bytes_per_stream=0)
    with pytest.raises(ValueError, match="max_total_bytes"):
        InMemoryEventStore(max_bytes_per_stream=100, max_total_bytes=10)
    store = InMemoryEventStore()
    assert (store.max_bytes_per_stream, store.max_total_bytes) == (1024 * 1024, 64 * 1024 * 1024)


async def test_a_reply_the_full_store_cannot_record_still_streams_without_ids():
    store = InMemoryEventStore(max_streams=1)
    other = await store.open_stream("someone-else")  # a live stream that fills the store
    other_priming = await store.append(other, None)
    with serve(build_server().http_app(event_store=store)) as url:
        async with open_session(url) as session:
            reply = await session.post(call(1, "poll", {"n": 3}, token="p"))
            # `poll` closes its stream to make the client resume: this one cannot be resumed, so it stays open.
            events = parse_events(reply.text)
            assert not any("id" in event for event in events)
            sent = messages(events)
            assert [m["params"]["progress"] for m in sent[:-1]] == [1, 2, 3]
            assert sent[-1]["id"] == 1 and sent[-1]["result"]["content"][0]["text"] == "polled 3"
            # Nothing was stored: a resume is the 400 of an unknown event id.
            assert (await session.resume("2:0")).status_code == 400
    assert await store.read("someone-else", other_priming, 0) is not None


# subscriptions/listen: the same caps as resources/subscribe.
async def listen_error(resource_subscriptions: list[Any]) -> dict[str, Any]:
    app = MCPServer("listen").http_app()
    body, headers = modern_request(
        "subscriptions/listen", {"notifications": {"resourceSubscriptions": resource_subscriptions}}
    )
    async with client_for(app) as http:
        response = await http.post("/mcp", json=body, headers=headers)
    return response.json()


async def test_listen_with_more_than_100_uris_is_invalid_params():
    reply = await listen_error([f"data://{n}" for n in range(101)])
    assert reply["error"]["code"] == -32602 and "at most 100 URIs" in reply["error"]["message"]


async def test_listen_with_a_uri_over_2048_characters_is_invalid_params():
    reply = await listen_error(["data://" + "u" * 2042])
    assert reply["error"]["code"] == -32602 and "at most 2048 characters" in reply["error"]["message"]


async def test_listen_with_100_distinct_uris_is_acknowledged():
    uris = [f"data://{n}" for n in range(100)] + ["data://0", 7]  # repeats and non-strings do not count
    with serve(MCPServer("listen").http_app()) as base:
        async with (
            httpx.AsyncClient(timeout=10) as http,
            listening(http, f"{base}/mcp", {"resourceSubscriptions": uris}) as listen,
        ):
            (ack,) = await listen.take(1, 5)
    assert ack["params"]["notifications"]["resourceSubscriptions"] == uris[:100]


# A full GET stream is reported as full, not as a missing one.
def asking_server(holder: dict[str, Any]) -> MCPServer:
    mcp = MCPServer("asking")

    @mcp.tool
    async def ask(ctx: Context, fill_stream: bool) -> str:
        broker = holder["endpoint"].broker
        session_id = ctx.session_id
        inbox = broker.listen(session_id) if fill_stream else None
        try:
            # An open GET stream whose client reads nothing: it fills up.
            while inbox is not None and await broker.publish(session_id, {"jsonrpc": "2.0", "method": "x"}):
                pass
            await ctx.elicit("Name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        except MCPError as error:
            return f"{error.code} {error.message}"
        finally:
            if inbox is not None:
                broker.unlisten(session_id, inbox)
        return "sent"

    return mcp


async def test_a_request_to_the_client_on_a_full_get_stream_says_it_is_full():
    holder: dict[str, Any] = {}
    app = asking_server(holder).http_app(json_response=True)
    holder["endpoint"] = app.state.mcp_endpoint
    init = {"protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}}, "clientInfo": {"name": "t"}}
    async with client_for(app) as http:
        response = await http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}, headers={"accept": ACCEPT}
        )
        headers = {"accept": ACCEPT, "mcp-session-id": response.headers["mcp-session-id"]}
        texts = []
        for fill in (True, False):
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "ask", "arguments": {"fill_stream": fill}},
            }
            texts.append((await http.post("/mcp", json=body, headers=headers)).json()["result"]["content"][0]["text"])
    full, missing = texts
    assert full.startswith("-32000 Cannot send elicitation/create to the client: the session's GET stream is full")
    assert "json_response" not in full
    assert "no open GET stream" in missing


# Legacy HTTP+SSE: an open stream keeps its session alive.
async def test_an_open_sse_stream_keeps_its_session_past_the_idle_timeout():
    store = InMemorySessionStore(idle_timeout=1.0, sweep_interval=0.1)
    app = MCPServer("quiet").http_app(transport="sse", session_store=store, keepalive_interval=0.1)
    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
            _, endpoint = await events.next()
            await anyio.sleep(2.0)  # no POST for twice the idle timeout
            response = await http.post(endpoint, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert response.status_code == 202
            assert (await events.message()) == {"jsonrpc": "2.0", "id": 1, "result": {}}


async def test_an_sse_stream_whose_session_is_gone_ends():
    store = InMemorySessionStore()
    app = MCPServer("quiet").http_app(transport="sse", session_store=store, keepalive_interval=0.1)
    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
            await events.next()
            (session_id,) = list(store._records)
            assert await store.delete(session_id)  # as if it had expired
            with pytest.raises(AssertionError, match="the stream ended"):
                await events.next(timeout=5)


# The sweeper runs even when nobody runs the lifespan.
def test_sessions_are_swept_without_any_lifespan(caplog):
    store = InMemorySessionStore(idle_timeout=0.3, sweep_interval=0.05)
    app = MCPServer("no lifespan").http_app(session_store=store)
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"), serve(app, lifespan="off") as base:
        response = httpx.post(
            f"{base}/mcp",
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
            },
            headers={"accept": ACCEPT},
        )
        assert response.status_code == 200 and len(store) == 1
        deadline = time.monotonic() + 5
        while len(store) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(store) == 0, "the idle session was never swept"
    # Nothing for the user to fix, so no warning.
    assert "lazily" not in caplog.text


async def test_a_lifespan_takes_over_from_the_lazily_started_sweeper():
    server = MCPServer("takeover")
    app = server.http_app(session_store=InMemorySessionStore(idle_timeout=10, sweep_interval=0.02))
    async with client_for(app) as http:
        await initialize(http, version="2025-06-18")
    lazy = server._sweeper._lazy[asyncio.get_running_loop()]
    with anyio.fail_after(5):
        while server._sweeper.active != 1:
            await anyio.sleep(0.01)
    async with app.router.lifespan_context(app):
        with anyio.fail_after(5):
            while not lazy.done():
                await anyio.sleep(0.01)
        assert lazy.cancelled() and server._sweeper.active == 1  # the lifespan's own sweep
        async with client_for(app) as http:
            await initialize(http, version="2025-06-18")
        assert not server._sweeper._lazy  # a session created meanwhile starts no second one
    assert server._sweeper.active == 0
