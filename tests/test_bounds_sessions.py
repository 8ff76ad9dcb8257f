"""What a client can make a session hold is bounded: client declarations, subscriptions, the number of sessions."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from mcp_asgi import Context, InMemorySessionStore, MCPServer, SessionRecord
from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.transports.sessions import SERVER_BUSY, trim_capabilities, trim_client_info
from tests.conftest import serve
from tests.http_helpers import ACCEPT, client_for, initialize

MB = 1024 * 1024


def initialize_body(capabilities: dict, client_info: dict, request_id: int = 1) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": client_info},
    }


def kept_size(record: SessionRecord) -> int:
    return len(json.dumps([record.client_capabilities, record.client_info]))


# What initialize leaves in the record.
async def test_a_huge_client_info_is_not_kept_in_memory():
    server = MCPServer("bounded")
    app = server.http_app(max_body_size=8 * MB)
    store = app.state.mcp_endpoint.sessions
    # The 4 MB clientInfo of the report, and a 1 MB capability on top.
    huge_info = {
        "name": "n" * (2 * MB),
        "version": "1.0",
        "icons": [{"src": "data:image/png;base64," + "A" * MB}],
        "junk": {"x": "y" * MB},
    }
    body = json.dumps(initialize_body({"elicitation": {}, "experimental": {"blob": "z" * MB}}, huge_info)).encode()
    async with client_for(app) as client:
        # Warm up every code path once so that lazy imports and caches are not counted below.
        await client.post("/mcp", content=body, headers={"accept": ACCEPT, "content-type": "application/json"})
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(5):
                response = await client.post(
                    "/mcp", content=body, headers={"accept": ACCEPT, "content-type": "application/json"}
                )
                assert response.status_code == 200, response.text
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert len(store) == 6
    # Five sessions that declared 5 MB each; kept whole, that would be over 25 MB.
    assert grown < 256 * 1024, f"the process grew by {grown} bytes"
    record = next(iter(store._records.values()))
    assert record.client_info == {"name": "n" * 256, "version": "1.0"}
    # The 1 MB string is no capability flag: dropped, its capability kept.
    assert record.client_capabilities == {"elicitation": {}, "experimental": {}}
    assert kept_size(record) < 1024


def test_client_info_keeps_its_strings_truncated_and_drops_the_rest():
    info = {
        "name": "client",
        "version": "v" * 300,
        "title": "Client",
        "description": "d" * 2000,
        "websiteUrl": "https://example.com/" + "p" * 3000,
        "icons": [{"src": "https://example.com/i.png"}],
        "extra": "x",
        "name2": 5,
    }
    assert trim_client_info(info) == {
        "name": "client",
        "version": "v" * 256,
        "title": "Client",
        "description": "d" * 1024,
    }
    assert trim_client_info({"name": 7, "version": "1"}) == {"version": "1"}
    assert trim_client_info("a string") is None


def test_capabilities_keep_what_the_server_reads_within_a_budget():
    declared = {
        "elicitation": {"form": {}, "url": {}},
        "sampling": {"context": {}, "tools": {}},
        "roots": {"listChanged": True},
        "tasks": {"requests": {"elicitation": {"create": {}}}, "cancel": {}},
        "experimental": {"big": {"payload": "p" * MB}, "deep": {"a": {"b": {"c": {"d": {"e": {}}}}}}},
        "custom": {"flag": True},
        "not-an-object": [1, 2, 3],
    }
    kept = trim_capabilities(declared, 4096, 32)
    assert kept["elicitation"] == {"form": {}, "url": {}}
    assert kept["sampling"] == {"context": {}, "tools": {}}
    assert kept["roots"] == {"listChanged": True}
    assert kept["tasks"] == {"requests": {"elicitation": {"create": {}}}, "cancel": {}}
    # Long strings are dropped and nesting stops at four levels below a capability.
    assert kept["experimental"] == {"big": {}, "deep": {"a": {"b": {"c": {}}}}}
    assert kept["custom"] == {"flag": True}
    assert "not-an-object" not in kept


def test_a_capability_that_does_not_fit_is_still_declared():
    wide = {f"k{i}": "v" * 200 for i in range(32)}
    kept = trim_capabilities({"experimental": wide, "sampling": {}, "elicitation": wide, "custom": wide}, 4096, 32)
    # Known capabilities keep their presence (what capability checks read); unknown ones are dropped.
    assert kept["elicitation"] == {}
    assert kept["sampling"] == {}
    assert kept["experimental"] == {}
    assert "custom" not in kept
    assert len(json.dumps(kept)) <= 4096


def test_many_unknown_capabilities_are_capped_in_number():
    declared = {f"ext{i}": {} for i in range(10_000)}
    declared["roots"] = {}
    kept = trim_capabilities(declared, 4096, 32)
    assert "roots" in kept
    assert len(kept) == 32


async def test_elicitation_still_works_for_a_client_that_declared_a_huge_capability_set():
    mcp = MCPServer("asks")

    @mcp.tool
    async def ask(ctx: Context) -> str:
        return json.dumps(ctx.client_capabilities)

    app = mcp.http_app(json_response=True)
    capabilities = {"elicitation": {"form": {}}, "experimental": {f"k{i}": {"v": "x" * 200} for i in range(5000)}}
    async with client_for(app) as client:
        response = await client.post("/mcp", json=initialize_body(capabilities, {"name": "t", "version": "0"}))
        session_id = response.headers["mcp-session-id"]
        headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ask", "arguments": {}}}
        response = await client.post("/mcp", json=call, headers=headers)
    seen = json.loads(response.json()["result"]["content"][0]["text"])
    assert seen["elicitation"] == {"form": {}}
    assert len(json.dumps(seen)) <= SessionRecord.max_capabilities_bytes


# resources/subscribe.
async def test_subscriptions_are_capped_in_number_and_uri_length(monkeypatch):
    monkeypatch.setattr(SessionRecord, "max_subscriptions", 3)
    app = MCPServer("subs").http_app()
    store = app.state.mcp_endpoint.sessions
    async with client_for(app) as client:
        session_id = await initialize(client)
        headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}

        async def subscribe(uri: str) -> dict:
            body = {"jsonrpc": "2.0", "id": 9, "method": "resources/subscribe", "params": {"uri": uri}}
            response = await client.post("/mcp", json=body, headers=headers)
            assert response.status_code == 200
            return response.json()

        for i in range(3):
            assert (await subscribe(f"data://{i}"))["result"] == {}
        # Subscribing again to a URI already held is no new subscription.
        assert (await subscribe("data://0"))["result"] == {}
        refused = await subscribe("data://3")
        assert refused["error"]["code"] == -32602
        assert "3 subscriptions" in refused["error"]["message"]
        too_long = await subscribe("data://" + "u" * SessionRecord.max_uri_length)
        assert too_long["error"]["code"] == -32602
        assert f"at most {SessionRecord.max_uri_length} characters" in too_long["error"]["message"]
    record = await store.get(session_id)
    assert record.subscriptions == {"data://0", "data://1", "data://2"}


# The session cap.
def post_initialize(base: str, request_id: int = 1) -> httpx.Response:
    return httpx.post(
        f"{base}/mcp", json=initialize_body({}, {"name": "t", "version": "0"}, request_id), headers={"accept": ACCEPT}
    )


def test_at_the_cap_a_new_session_gets_503_and_existing_ones_keep_working():
    store = InMemorySessionStore(max_sessions=2)
    with serve(MCPServer("capped").http_app(session_store=store)) as base:
        first, second = post_initialize(base), post_initialize(base)
        assert first.status_code == second.status_code == 200
        refused = post_initialize(base, request_id=7)
        assert refused.status_code == 503
        body = refused.json()
        assert body["id"] == 7
        assert body["error"]["code"] == SERVER_BUSY == -32000
        assert body["error"]["message"] == "Server busy: the limit of 2 open sessions is reached; try again later"
        assert "mcp-session-id" not in refused.headers
        for response in (first, second):
            ping = httpx.post(
                f"{base}/mcp",
                json={"jsonrpc": "2.0", "id": 3, "method": "ping"},
                headers={
                    "accept": ACCEPT,
                    "mcp-session-id": response.headers["mcp-session-id"],
                    "mcp-protocol-version": "2025-11-25",
                },
            )
            assert ping.status_code == 200
            assert ping.json()["result"] == {}
    assert len(store) == 2


async def test_at_the_cap_expired_sessions_are_reclaimed_first():
    # No sweeper runs here (no lifespan): creating at the cap must reclaim on its own.
    store = InMemorySessionStore(max_sessions=2, idle_timeout=0.2)
    await store.create(SessionRecord("a"))
    await store.create(SessionRecord("b"))
    with pytest.raises(MCPError) as refused:
        await store.create(SessionRecord("c"))
    assert refused.value.http_status == 503
    await anyio.sleep(0.1)
    assert (await store.get("b")).session_id == "b"  # b is active again; a is not
    await anyio.sleep(0.15)
    await store.create(SessionRecord("c"))
    assert await store.get("a") is None
    assert (await store.get("b")).session_id == "b"
    assert (await store.get("c")).session_id == "c"


async def test_refusing_at_the_cap_costs_no_sort_of_all_sessions():
    # 100,000 sessions: the old code sorted them all on every initialize at the cap (about 20 ms each).
    store = InMemorySessionStore(max_sessions=100_000)
    for i in range(100_000):
        await store.create(SessionRecord(f"s{i}"))
    started = time.perf_counter()
    for _ in range(500):
        with pytest.raises(MCPError):
            await store.create(SessionRecord("new"))
    elapsed = time.perf_counter() - started
    # Sorting would take about 10 s here; a constant-time refusal takes milliseconds.
    assert elapsed < 1.0, elapsed
    assert len(store) == 100_000
    assert (await store.get("s0")).session_id == "s0"


async def test_a_deleted_session_is_not_brought_back_by_a_late_change():
    store = InMemorySessionStore()
    await store.create(SessionRecord("gone"))
    await store.delete("gone")
    assert await store.update("gone", log_level="debug") is False
    assert await store.subscribe("gone", "data://x") is False
    assert await store.get("gone") is None and len(store) == 0


def test_store_options_are_checked_at_construction():
    with pytest.raises(ValueError, match="max_sessions"):
        InMemorySessionStore(max_sessions=0)
    with pytest.raises(ValueError, match="idle_timeout"):
        InMemorySessionStore(idle_timeout=0)
    with pytest.raises(ValueError, match="sweep_interval"):
        InMemorySessionStore(sweep_interval=-1)


@asynccontextmanager
async def open_sse(client: httpx.AsyncClient, base: str):
    async with client.stream("GET", f"{base}/sse", headers={"accept": "text/event-stream"}) as response:
        yield response


async def test_legacy_sse_at_the_cap_answers_503_and_keeps_the_open_stream():
    store = InMemorySessionStore(max_sessions=1)
    with serve(MCPServer("capped-sse").http_app(transport="sse", session_store=store)) as base:
        async with httpx.AsyncClient(timeout=5) as client, open_sse(client, base) as stream:
            lines = stream.aiter_lines()
            assert stream.status_code == 200
            assert await lines.__anext__() == "event: endpoint"
            endpoint = (await lines.__anext__())[len("data: ") :]
            refused = await client.get(f"{base}/sse", headers={"accept": "text/event-stream"})
            assert refused.status_code == 503
            assert refused.json()["error"] == {
                "code": -32000,
                "message": "Server busy: the limit of 1 open sessions is reached; try again later",
            }
            # The open stream still answers.
            ping = await client.post(f"{base}{endpoint}", json={"jsonrpc": "2.0", "id": 5, "method": "ping"})
            assert ping.status_code == 202
            with anyio.fail_after(5):
                async for line in lines:
                    if line.startswith("data:"):
                        assert json.loads(line[5:]) == {"jsonrpc": "2.0", "id": 5, "result": {}}
                        break


def test_a_record_copy_has_every_field_and_its_own_subscriptions() -> None:
    # copy() lists the fields by hand (it runs on every request): a field added later must be copied too.
    import dataclasses

    record = SessionRecord(
        session_id="s",
        protocol_version="2025-11-25",
        client_capabilities={"roots": {}},
        client_info={"name": "c", "version": "1"},
        log_level="info",
        subscriptions={"data://a"},
        initialized=True,
        created_at=1.0,
        last_active=2.0,
        principal="user:alice",
    )
    copied = record.copy()
    for field in dataclasses.fields(SessionRecord):
        assert getattr(copied, field.name) == getattr(record, field.name), field.name
    copied.subscriptions.add("data://b")
    assert record.subscriptions == {"data://a"}
    assert not hasattr(record, "__dict__")  # slots: a store holds many of these
