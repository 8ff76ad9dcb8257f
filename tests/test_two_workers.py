"""Two workers behind one session: every request may land on either, and everything still works.

A "worker" is a real uvicorn serving the app of its own MCPServer (built by the same function,
as `uvicorn --workers 2` would), each with its own RedisBackend on one real Redis and the same
state secret. The `memory` runs serve one app on the in-memory backend twice over (the same
code path on one worker): every test must pass on both.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from mcp_asgi import Context, InMemorySessionStore, MCPServer
from mcp_asgi.redis import RedisBackend
from tests.conftest import serve
from tests.http_helpers import ACCEPT
from tests.test_notifications import Frames, call_tool, listening

VERSION = "2025-06-18"


class Flags:
    """What the tools of every worker saw, for the test to check (the servers run in threads)."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.elicit_failed = threading.Event()


def build(flags: Flags, **options: Any) -> MCPServer:
    mcp = MCPServer("scaled", **options)

    @mcp.tool
    def add_tool(name: str) -> str:
        """Register a tool at run time."""
        mcp.tool(name=name, description="added at run time")(lambda: "new")
        return "added"

    @mcp.tool
    async def touch(uri: str) -> str:
        """Say that a resource changed."""
        await mcp.notify_resource_updated(uri)
        return "touched"

    @mcp.tool
    async def slow() -> str:
        """Run until cancelled."""
        flags.started.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            flags.cancelled.set()
            raise
        return "finished"

    @mcp.tool
    async def ask(ctx: Context) -> str:
        """Ask the user's name."""
        flags.started.set()
        try:
            answer = await ctx.elicit("Name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        except BaseException:
            flags.elicit_failed.set()
            raise
        return f"Hello, {answer.content['name']}!"

    @mcp.resource("data://watched")
    def watched() -> str:
        return "v1"

    return mcp


class Workers:
    """The two workers' MCP URLs, and clients that pick a worker or alternate between them."""

    def __init__(self, urls: list[str], flags: Flags) -> None:
        self.urls = urls
        self.flags = flags
        self.turn = 0

    def next_url(self) -> str:
        """The URL of the other worker than last time: round robin, no stickiness."""
        url = self.urls[self.turn % 2]
        self.turn += 1
        return url

    async def initialize(self, http: httpx.AsyncClient, capabilities: dict | None = None) -> dict[str, str]:
        body = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": capabilities or {}, "clientInfo": {"name": "t"}},
        }
        response = await http.post(self.next_url(), json=body, headers={"accept": ACCEPT})
        assert response.status_code == 200, response.text
        headers = {"accept": ACCEPT, "mcp-session-id": response.headers["mcp-session-id"]}
        headers["mcp-protocol-version"] = VERSION
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(self.next_url(), json=note, headers=headers)).status_code == 202
        return headers


@pytest.fixture(params=["redis", "memory"])
def workers(request: pytest.FixtureRequest) -> Iterator[Workers]:
    with _workers(request) as made:
        yield made


@pytest.fixture(params=["redis", "memory"])
def json_workers(request: pytest.FixtureRequest) -> Iterator[Workers]:
    """Workers whose apps never stream a reply: the GET stream carries requests to the client."""
    with _workers(request, json_response=True) as made:
        yield made


@pytest.fixture(params=["redis", "memory"])
def quick_workers(request: pytest.FixtureRequest) -> Iterator[Workers]:
    """Workers with a 0.2 s keep-alive, so GET-stream claims are renewed (and lapse) fast."""
    with _workers(request, keepalive_interval=0.2) as made:
        yield made


@pytest.fixture(params=["redis", "memory"])
def expiring_workers(request: pytest.FixtureRequest) -> Iterator[Workers]:
    """Workers whose sessions expire after 1 s without a request."""
    with _workers(request, idle_timeout=1.0) as made:
        yield made


@contextlib.contextmanager
def _workers(request: pytest.FixtureRequest, idle_timeout: float = 3600.0, **app_options: Any) -> Iterator[Workers]:
    flags = Flags()
    if request.param == "memory":
        store = InMemorySessionStore(idle_timeout=idle_timeout)
        with serve(build(flags).http_app(session_store=store, **app_options)) as base:
            yield Workers([f"{base}/mcp"] * 2, flags)
        return
    redis_url = request.getfixturevalue("redis_url")
    prefix = f"two-workers-{uuid.uuid4().hex[:8]}:"

    def app() -> Any:
        backend = RedisBackend(redis_url, prefix=prefix, idle_timeout=idle_timeout)
        return build(flags, state_secret="shared", backend=backend).http_app(**app_options)

    with serve(app()) as one, serve(app()) as two:
        yield Workers([f"{one}/mcp", f"{two}/mcp"], flags)


def rpc(method: str, params: dict | None = None, request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


@contextlib.asynccontextmanager
async def get_stream(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> AsyncIterator[Frames]:
    """The session's GET stream on the worker at `url`, read in the background."""
    async with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        frames = Frames(response)
        async with anyio.create_task_group() as group:
            group.start_soon(frames.pump)
            yield frames
            group.cancel_scope.cancel()


async def test_every_request_on_the_other_worker(workers):
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http)
        for request_id in range(4):
            listed = await http.post(workers.next_url(), json=rpc("tools/list", request_id=request_id), headers=headers)
            assert "add_tool" in [tool["name"] for tool in _result(listed)["tools"]]


async def test_list_changes_and_updates_raised_on_one_worker_reach_a_get_stream_on_the_other_once(workers):
    one, two = workers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http)
        subscribed = await http.post(two, json=rpc("resources/subscribe", {"uri": "data://watched"}), headers=headers)
        assert subscribed.status_code == 200, subscribed.text
        async with get_stream(http, one, headers) as frames:
            await _call(http, two, headers, "add_tool", {"name": "fresh"})
            await _call(http, two, headers, "touch", {"uri": "data://other"})
            await _call(http, two, headers, "touch", {"uri": "data://watched"})
            got = await frames.take(3, 3)
    # Exactly once each, in order: no echo of a worker's own change, nothing for an unwatched URI.
    assert [frame["method"] for frame in got] == [
        "notifications/tools/list_changed",
        "notifications/resources/updated",
    ]
    assert got[1]["params"]["uri"] == "data://watched"


async def test_subscriptions_listen_hears_changes_raised_on_the_other_worker(workers):
    one, two = workers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        async with listening(http, one, {"toolsListChanged": True}) as listen:
            (ack,) = await listen.take(1, 3)
            assert ack["method"] == "notifications/subscriptions/acknowledged"
            await call_tool(http, two, "add_tool", {"name": "late"})
            frames = await listen.take(2, 2)
    assert [frame["method"] for frame in frames] == ["notifications/tools/list_changed"]


async def test_one_get_stream_per_session_across_workers(workers):
    one, two = workers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http)
        async with get_stream(http, one, headers):
            second = await http.get(two, headers={**headers, "accept": "text/event-stream"})
            assert second.status_code == 409
        # Released once the server sees the first stream end: the other worker may open it then.
        with anyio.fail_after(5):
            while True:
                async with http.stream("GET", two, headers={**headers, "accept": "text/event-stream"}) as again:
                    if again.status_code == 200:
                        break
                    assert again.status_code == 409
                await anyio.sleep(0.05)


async def test_a_long_lived_get_stream_keeps_its_claim(quick_workers):
    one, two = quick_workers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await quick_workers.initialize(http)
        async with get_stream(http, one, headers) as frames:
            await anyio.sleep(1.5)  # a claim lasts 0.6 s here unless renewed
            async with http.stream("GET", two, headers={**headers, "accept": "text/event-stream"}) as second:
                assert second.status_code == 409
            assert not frames.done.is_set()


async def test_an_elicitation_answered_at_the_other_worker(workers):
    one, two = workers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http, {"elicitation": {}})
        async with http.stream("POST", two, json=rpc("tools/call", {"name": "ask"}, 5), headers=headers) as call:
            frames = Frames(call)
            async with anyio.create_task_group() as group:
                group.start_soon(frames.pump)
                (question,) = await frames.take(1, 3)
                assert question["method"] == "elicitation/create"
                accepted = {"action": "accept", "content": {"name": "Eve"}}
                answer = {"jsonrpc": "2.0", "id": question["id"], "result": accepted}
                assert (await http.post(one, json=answer, headers=headers)).status_code == 202
                (result,) = await frames.take(1, 5)
                group.cancel_scope.cancel()
    assert result["id"] == 5 and result["result"]["content"][0]["text"] == "Hello, Eve!"


async def test_a_request_to_the_client_goes_down_the_get_stream_another_worker_holds(json_workers):
    workers = json_workers
    one, two = workers.urls
    replies: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http, {"elicitation": {}})
        async with get_stream(http, one, headers) as frames:

            async def call() -> None:
                replies.append(await http.post(two, json=rpc("tools/call", {"name": "ask"}, 4), headers=headers))

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                (question,) = await frames.take(1, 5)
                assert question["method"] == "elicitation/create"
                accepted = {"action": "accept", "content": {"name": "Ann"}}
                answer = {"jsonrpc": "2.0", "id": question["id"], "result": accepted}
                # Answered at the worker holding the stream; the question waits on the other one.
                assert (await http.post(one, json=answer, headers=headers)).status_code == 202
                with anyio.fail_after(5):
                    while not replies:
                        await anyio.sleep(0.01)
    assert replies[0].json()["result"]["content"][0]["text"] == "Hello, Ann!"


async def test_a_cancellation_sent_to_the_other_worker_stops_the_call(workers):
    one, two = workers.urls
    replies: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http)

        async def call() -> None:
            replies.append(await http.post(two, json=rpc("tools/call", {"name": "slow"}, 9), headers=headers))

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await _wait(workers.flags.started)
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
            assert (await http.post(one, json=cancel, headers=headers)).status_code == 202
            await _wait(workers.flags.cancelled)
            with anyio.fail_after(5):
                while not replies:
                    await anyio.sleep(0.01)
    assert b'"result"' not in replies[0].content  # a cancelled request gets no response


async def test_delete_on_one_worker_ends_the_stream_the_calls_and_the_questions_of_another(workers):
    one, two = workers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http, {"elicitation": {}})
        async with get_stream(http, two, headers) as frames:
            async with http.stream("POST", two, json=rpc("tools/call", {"name": "ask"}, 3), headers=headers):
                await _wait(workers.flags.started)
                assert (await http.delete(one, headers=headers)).status_code == 200
                # The question waiting for its answer fails at once, not after the client-request timeout.
                await _wait(workers.flags.elicit_failed)
                with anyio.fail_after(5):
                    await frames.done.wait()  # the GET stream on the other worker ended
        gone = await http.post(two, json=rpc("tools/list"), headers=headers)
        assert gone.status_code == 404


async def test_a_question_fails_soon_after_its_session_expires(expiring_workers):
    workers = expiring_workers
    one, two = workers.urls
    async with httpx.AsyncClient(timeout=10) as http:
        headers = await workers.initialize(http, {"elicitation": {}})
        # Asked on the first worker: the client never answers, nor sends anything else.
        async with http.stream("POST", one, json=rpc("tools/call", {"name": "ask"}, 3), headers=headers) as call:
            frames = Frames(call)
            async with anyio.create_task_group() as group:
                group.start_soon(frames.pump)
                (question,) = await frames.take(1, 3)
                assert question["method"] == "elicitation/create"
                with anyio.fail_after(4):  # 1 s to expire, then at most 1 s to notice; not the 300 s timeout
                    (reply,) = await frames.take(1, 4)
                group.cancel_scope.cancel()
        assert workers.flags.elicit_failed.is_set()
        # The tool let the error through: the call's answer is that JSON-RPC error.
        ended = "The session ended while elicitation/create waited for the client's answer"
        assert reply == {"jsonrpc": "2.0", "id": 3, "error": {"code": -32600, "message": ended}}
        gone = await http.post(two, json=rpc("tools/list"), headers=headers)
        assert gone.status_code == 404


async def _call(http: httpx.AsyncClient, url: str, headers: dict[str, str], name: str, arguments: dict) -> dict:
    response = await http.post(url, json=rpc("tools/call", {"name": name, "arguments": arguments}, 2), headers=headers)
    return _result(response)


def _result(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        frames = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
        (message,) = [frame for frame in frames if "id" in frame]
    else:
        message = response.json()
    assert "result" in message, message
    return message["result"]


async def _wait(event: threading.Event, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not event.is_set():
            await anyio.sleep(0.01)


@pytest.mark.parametrize("store", ["redis", "memory"])
async def test_a_get_stream_ends_soon_once_the_session_is_gone(store, request):
    # The DELETE's broadcast may never reach a worker (the bus was down): its keep-alive notices.
    flags = Flags()
    options: dict[str, Any] = {}
    if store == "redis":
        prefix = f"keepalive-{uuid.uuid4().hex[:8]}:"
        options = {"state_secret": "s", "backend": RedisBackend(request.getfixturevalue("redis_url"), prefix=prefix)}
    app = build(flags, **options).http_app(keepalive_interval=0.2)
    with serve(app) as base:
        workers = Workers([f"{base}/mcp"] * 2, flags)
        async with httpx.AsyncClient(timeout=10) as http:
            headers = await workers.initialize(http)
            session_id = headers["mcp-session-id"]
            async with get_stream(http, workers.urls[0], headers) as frames:
                await anyio.sleep(0.5)
                assert not frames.done.is_set()  # keep-alives alone do not end a live session's stream
                if store == "redis":
                    import redis.asyncio

                    raw = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
                    await raw.delete(f"{prefix}session:{session_id}")
                    await raw.aclose()
                else:
                    await app.state.mcp_endpoint.sessions.delete(session_id)
                with anyio.fail_after(3):
                    await frames.done.wait()
