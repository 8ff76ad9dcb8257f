"""Every feature on two real uvicorn processes sharing one real Redis, every request on the next
worker in turn (round robin, keep-alive off): what a deployment behind a load balancer sees.

The workers find Redis through `MCP_ASGI_REDIS_URL` alone (no code change), and share
`MCP_ASGI_STATE_SECRET`. Tools report their worker's process id, so each test can prove
that its requests really reached both workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest

from tests.multiworker import ROOT, Workers, alternating_httpx, sdk_client, sdk_sse_client
from tests.redis_server import RedisServer

ACCEPT = "application/json, text/event-stream"
V2025 = "2025-11-25"
SSE_HEADERS = {"accept": "text/event-stream"}


@pytest.fixture(scope="module")
def workers(redis_url: str) -> Any:
    with Workers(redis_url) as pair:
        yield pair


async def on_elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Alice"})


def text(result: Any) -> str:
    return result.content[0].text


class Session:
    """A 2025-11-25 session driven by raw HTTP; `on(i)` is a client pinned to worker i."""

    def __init__(self, workers: Workers, session_id: str) -> None:
        self.workers = workers
        self.id = session_id
        self.headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": V2025}

    def on(self, index: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.workers.ports[index]}", timeout=10)

    async def post(self, index: int, body: dict[str, Any]) -> httpx.Response:
        async with self.on(index) as http:
            return await http.post("/mcp", json=body, headers=self.headers)

    async def call(self, index: int, name: str, arguments: dict[str, Any], request_id: int = 1) -> Any:
        body = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
        response = await self.post(index, body)
        assert response.status_code == 200, response.text
        return json.loads(response.text.rpartition("data: ")[2]) if "data: " in response.text else response.json()

    @asynccontextmanager
    async def stream(self, index: int, **headers: str) -> AsyncIterator[httpx.Response]:
        """The session's GET stream on worker `index` (or a resumption, given `last-event-id`)."""
        async with self.on(index) as http:
            merged = {**self.headers, **SSE_HEADERS, **headers}
            async with http.stream("GET", "/mcp", headers=merged, timeout=httpx.Timeout(10, read=15)) as response:
                yield response


async def open_session(workers: Workers, index: int = 0) -> Session:
    """initialize on worker `index`, notifications/initialized on the other."""
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize"}
    init["params"] = {"protocolVersion": V2025, "capabilities": {}, "clientInfo": {"name": "mw", "version": "0"}}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{workers.ports[index]}", timeout=10) as http:
        response = await http.post("/mcp", json=init, headers={"accept": ACCEPT})
    assert response.status_code == 200, response.text
    session = Session(workers, response.headers["mcp-session-id"])
    sent = await session.post(1 - index, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert sent.status_code == 202, sent.text
    return session


async def sse_messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an SSE response, as they arrive (priming and keep-alive events skipped)."""
    async for line in response.aiter_lines():
        if line.startswith("data:") and line[5:].strip():
            yield json.loads(line[5:])


async def next_message(messages: AsyncIterator[dict[str, Any]], method: str, timeout: float = 5) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        async for message in messages:
            if message.get("method") == method:
                return message
    raise AssertionError(f"the stream ended before {method}")


# --- 2025 sessions ------------------------------------------------------------------------------


async def test_sessions_are_created_used_and_deleted_across_workers(workers):
    with anyio.fail_after(20):
        async with sdk_client(workers.ports, "legacy") as client:
            pids = {int(text(await client.call_tool("worker", {}))) for _ in range(4)}
            assert len(pids) == 2  # both workers answered the one session
            assert "slow" in {tool.name for tool in (await client.list_tools()).tools}

        session = await open_session(workers, 0)
        assert (await session.call(1, "worker", {}))["result"]
        async with alternating_httpx(workers.ports[1:]) as http:
            assert (await http.delete("/mcp", headers=session.headers)).status_code == 200
        for index in (0, 1):  # gone on both workers, not only on the one that saw the DELETE
            assert (await session.post(index, {"jsonrpc": "2.0", "id": 9, "method": "ping"})).status_code == 404


async def test_get_stream_receives_notifications_raised_on_the_other_worker(workers):
    session = await open_session(workers)
    async with session.stream(0) as stream:
        assert stream.status_code == 200
        messages = sse_messages(stream)
        await session.call(1, "grow", {"name": "grown_mw"})
        await next_message(messages, "notifications/tools/list_changed")
        await session.call(1, "shrink", {"name": "grown_mw"})
        await next_message(messages, "notifications/tools/list_changed")


async def test_resource_updates_raised_on_either_worker_reach_the_subscriber(workers):
    session = await open_session(workers)
    async with session.stream(0) as stream:
        messages = sse_messages(stream)
        subscribe = {"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": {"uri": "notes://today"}}
        assert (await session.post(1, subscribe)).status_code == 200
        for index in (0, 1):
            await session.call(index, "touch", {})
            updated = await next_message(messages, "notifications/resources/updated")
            assert updated["params"]["uri"] == "notes://today"


async def test_an_elicitation_answered_on_the_other_worker_completes_the_call(workers):
    with anyio.fail_after(10):
        async with sdk_client(workers.ports, "legacy", elicitation_callback=on_elicit) as client:
            for _ in range(2):  # the answer POST lands on each worker in turn
                assert text(await client.call_tool("ask_name", {})) == "Hello, Alice!"


async def test_notifications_cancelled_on_the_other_worker_stops_the_call(workers):
    session = await open_session(workers)
    call = {"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 8}}}
    replies: list[httpx.Response] = []
    started = time.monotonic()
    with anyio.fail_after(6):
        async with anyio.create_task_group() as group:

            async def post() -> None:
                replies.append(await session.post(0, call))

            group.start_soon(post)
            await anyio.sleep(0.5)
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 41}}
            assert (await session.post(1, cancel)).status_code == 202
    assert time.monotonic() - started < 5
    # The cancelled call gets no JSON-RPC response, as on one process (and as the spec asks).
    assert (replies[0].status_code, replies[0].content) == (202, b"")


async def test_delete_on_one_worker_ends_the_get_stream_and_call_on_the_other(workers):
    session = await open_session(workers)
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow", "arguments": {"seconds": 8}}}
    replies: list[httpx.Response] = []
    ended: list[float] = []
    started = time.monotonic()
    with anyio.fail_after(6):
        async with anyio.create_task_group() as group:

            async def hold_stream() -> None:
                async with session.stream(0) as stream:
                    assert stream.status_code == 200
                    async for _ in stream.aiter_lines():
                        pass
                ended.append(time.monotonic())

            async def post() -> None:
                replies.append(await session.post(0, call))

            group.start_soon(hold_stream)
            group.start_soon(post)
            await anyio.sleep(0.5)
            async with session.on(1) as http:
                assert (await http.delete("/mcp", headers=session.headers)).status_code == 200
    assert ended and ended[0] - started < 5
    # The call the ended session held is cancelled: no result, no JSON-RPC response.
    assert (replies[0].status_code, replies[0].content) == (202, b"")


async def test_one_get_stream_per_session_across_workers(workers):
    session = await open_session(workers)
    async with session.stream(0) as first:
        assert first.status_code == 200
        async with session.stream(1) as second:
            assert second.status_code == 409


async def test_last_event_id_resumes_on_the_other_worker(workers):
    session = await open_session(workers)
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    body["params"] = {"name": "poll", "arguments": {"steps": 3}, "_meta": {"progressToken": "p"}}
    with anyio.fail_after(10):
        cut = await session.post(0, body)
        ids = [line[3:].strip() for line in cut.text.splitlines() if line.startswith("id:")]
        assert ids and '"progress":1' in cut.text.replace(" ", "") and "polled" not in cut.text
        async with session.stream(1, **{"last-event-id": ids[-1]}) as resumed:
            assert resumed.status_code == 200
            got = [message async for message in sse_messages(resumed)]
    assert [m["params"]["progress"] for m in got if m.get("method") == "notifications/progress"] == [2, 3]
    assert got[-1]["id"] == 7 and "polled 3" in got[-1]["result"]["content"][0]["text"]


async def test_the_documented_redis_backend_serves_two_workers(redis_url, tmp_path):
    # The `backend=RedisBackend(...)` block of "Deploying on several workers", as written but for the URL.
    docs = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    section = docs.partition("## Deploying on several workers")[2]
    block = section.partition("```python\n")[2].partition("```")[0]
    assert "RedisBackend(" in block
    (tmp_path / "documented.py").write_text(block.replace("redis://127.0.0.1:6379/0", redis_url), encoding="utf-8")
    with Workers(redis_url, app="documented:app", app_dir=tmp_path) as pair, anyio.fail_after(15):
        async with sdk_client(pair.ports, "legacy") as client:  # created on one worker, used on both
            for a in range(4):
                assert (await client.call_tool("add", {"a": a, "b": 1})).structured_content == {"result": a + 1}


# --- legacy HTTP+SSE and 2026-07-28 -------------------------------------------------------------


async def test_legacy_sse_posts_reach_the_stream_from_either_worker(workers):
    with anyio.fail_after(10):
        used: list[int] = []
        async with sdk_sse_client(workers.ports, used=used, elicitation_callback=on_elicit) as client:
            pids = {int(text(await client.call_tool("worker", {}))) for _ in range(4)}
            assert text(await client.call_tool("ask_name", {})) == "Hello, Alice!"
        # The POSTs went to both workers; the worker holding the stream ran every call.
        assert used[0] == workers.ports[0] and workers.ports[1] in used[1:] and workers.ports[0] in used[1:]
        assert len(pids) == 1


async def test_mrtr_retries_land_on_either_worker(workers):
    with anyio.fail_after(20):
        async with sdk_client(workers.ports, "2026-07-28", elicitation_callback=on_elicit) as client:
            pids = {int(text(await client.call_tool("worker", {}))) for _ in range(4)}
            assert len(pids) == 2
            for _ in range(3):  # the first leg and the retry on different workers, both ways round
                assert text(await client.call_tool("ask_name", {})) == "Hello, Alice!"


async def test_listen_stream_receives_changes_raised_on_the_other_worker(workers):
    with anyio.fail_after(15):
        async with (
            sdk_client(workers.ports[:1], "2026-07-28") as listener,
            sdk_client(workers.ports[1:], "2026-07-28") as changer,
        ):
            async with listener.listen(tools_list_changed=True) as subscription:
                await changer.call_tool("grow", {"name": "grown_listen"})
                async for _event in subscription:
                    break
            await changer.call_tool("shrink", {"name": "grown_listen"})


# --- uvicorn --workers 2, and faults ------------------------------------------------------------


async def _one_session(ports: list[int], mode: str) -> set[int]:
    """One session of the official client in `mode`, with its round trip; the worker pids it met."""
    if mode == "sse":
        client = sdk_sse_client(ports, elicitation_callback=on_elicit)
    else:
        client = sdk_client(ports, "legacy" if mode == "2025" else "2026-07-28", elicitation_callback=on_elicit)
    async with client:
        pids = {int(text(await client.call_tool("worker", {}))) for _ in range(2)}
        assert text(await client.call_tool("ask_name", {})) == "Hello, Alice!"  # elicitation, or MRTR on 2026
    return pids


@pytest.mark.parametrize("mode", ["2025", "2026", "sse"])
async def test_uvicorn_workers_2_serves_twenty_concurrent_sessions(redis_url, mode):
    """20 official-client sessions at once: 2025 with an elicitation, 2026-07-28 with MRTR, or legacy SSE."""
    with Workers(redis_url, master=True) as master:
        failures: list[str] = []
        pids: set[int] = set()

        async def one() -> None:
            try:
                with anyio.fail_after(20):
                    pids.update(await _one_session(master.ports, mode))
            except Exception as error:  # counted, so the assertion shows every failure at once
                failures.append(repr(error)[:300])

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for _ in range(20):
                    group.start_soon(one)
    assert failures == []
    if mode != "sse":
        # Every call is a new connection the kernel hands to either worker: both answer some.
        assert len(pids) == 2
    # Legacy SSE calls run on the worker holding the session's stream, wherever their POST landed,
    # and the kernel may hand all 20 streams to one worker: the pids prove nothing there. That
    # POSTs reach the stream through the other worker is pinned by the two-process SSE test above.


async def test_a_sigkilled_worker_costs_only_its_call(redis_url):
    with Workers(redis_url) as pair:
        session = await open_session(pair)
        survivor = int((await session.call(1, "worker", {}))["result"]["content"][0]["text"])
        errors: list[BaseException] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:

                async def doomed() -> None:
                    try:
                        await session.call(0, "slow", {"seconds": 5})
                    except httpx.TransportError as error:
                        errors.append(error)

                group.start_soon(doomed)
                await anyio.sleep(0.5)
                pair.kill(0)
            assert len(errors) == 1  # the call the killed worker was running is lost
            # The session goes on through the survivor: calls, its GET stream, a fresh round trip.
            assert int((await session.call(1, "worker", {}, request_id=3))["result"]["content"][0]["text"]) == survivor
            async with session.stream(1) as stream:
                assert stream.status_code == 200
            async with sdk_client(pair.ports[1:], "legacy", elicitation_callback=on_elicit) as client:
                assert text(await client.call_tool("ask_name", {})) == "Hello, Alice!"


async def _initialize_status(port: int) -> tuple[int, float, dict[str, Any]]:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize"}
    init["params"] = {"protocolVersion": V2025, "capabilities": {}, "clientInfo": {"name": "mw", "version": "0"}}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
        response = await http.post("/mcp", json=init, headers={"accept": ACCEPT})
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    return response.status_code, time.monotonic() - started, body


async def test_redis_going_away_gives_503_and_service_resumes_by_itself(redis_server: RedisServer):
    with Workers(redis_server.url) as pair:
        session = await open_session(pair)
        assert (await session.call(1, "worker", {}))["result"]
        redis_server.stop()
        for port in pair.ports:
            status, took, body = await _initialize_status(port)
            assert status == 503 and took < 5, (status, took)
            assert body["error"]["code"] == -32000
        assert (await session.post(0, {"jsonrpc": "2.0", "id": 2, "method": "ping"})).status_code == 503
        redis_server.start()
        deadline = time.monotonic() + 10
        while (await _initialize_status(pair.ports[0]))[0] != 200:
            assert time.monotonic() < deadline, "service did not resume within 10 s of Redis coming back"
            await anyio.sleep(0.2)
        # Redis lost its data (no persistence), so sessions start afresh, and work across workers again.
        fresh = await open_session(pair, 1)
        assert (await fresh.call(0, "worker", {}))["result"]
