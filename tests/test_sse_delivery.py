"""How legacy SSE hands POSTed messages to their stream: in order, bounded, in the stream's context, never orphaned.

A POSTed request goes straight to the stream's conversation when the stream's reader waits
on an empty inbox, and through the inbox otherwise; these pin what must not change either way.
"""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import Any

import anyio
import httpx

from mcp_asgi import MCPServer
from mcp_asgi.transports.broker import InProcessBroker
from mcp_asgi.transports.sessions import InMemorySessionStore
from tests.conftest import serve
from tests.test_sse import INITIALIZE, Events, open_stream

INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}

# Set by `MarkMethod` around each HTTP request: the tools report which request's context they run in.
REQUEST_METHOD: ContextVar[str] = ContextVar("request_method", default="none")


class Flag:
    """A flag one thread sets and another waits for without blocking its event loop."""

    def __init__(self) -> None:
        self.event = threading.Event()

    async def wait(self, timeout: float = 5) -> None:
        with anyio.fail_after(timeout):
            while not self.event.is_set():
                await anyio.sleep(0.01)


class HeldStore(InMemorySessionStore):
    """Holds the store write of `notifications/initialized` until `opened`: the stream's reader is busy meanwhile."""

    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order
        self.entered = Flag()
        self.opened = Flag()

    async def update(self, session_id: str, **fields: Any) -> bool:
        if fields.get("initialized"):
            self.entered.event.set()
            await self.opened.wait()
            self.order.append("initialized")
        return await super().update(session_id, **fields)


def build(order: list[str], entered: Flag | None = None, cancelled: Flag | None = None) -> MCPServer:
    mcp = MCPServer("delivery")

    @mcp.tool
    async def mark() -> str:
        order.append("tool")
        return REQUEST_METHOD.get()

    @mcp.tool
    async def hold() -> str:
        assert entered is not None and cancelled is not None
        entered.event.set()
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            cancelled.event.set()
            raise
        return "never"

    return mcp


class MarkMethod:
    """An ASGI middleware that puts the HTTP method of each request in a context variable."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        token = REQUEST_METHOD.set(scope.get("method", "none"))
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_METHOD.reset(token)


def call(request_id: int, name: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": {}}}


async def initialize(http: httpx.AsyncClient, events: Events) -> str:
    event, endpoint = await events.next()
    assert event == "endpoint"
    assert (await http.post(endpoint, json=INITIALIZE)).status_code == 202
    assert (await events.message())["id"] == 1
    return endpoint


async def test_a_request_posted_while_the_stream_is_busy_waits_for_the_messages_before_it():
    order: list[str] = []
    store = HeldStore(order)
    with serve(build(order).http_app(transport="sse", session_store=store)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
            endpoint = await initialize(http, events)
            assert (await http.post(endpoint, json=INITIALIZED)).status_code == 202
            await store.entered.wait()  # the stream's reader is now busy with the notification
            assert (await http.post(endpoint, json=call(2, "mark"))).status_code == 202
            store.opened.event.set()
            reply = await events.message()
            assert reply["id"] == 2 and not reply["result"].get("isError")
            # The call was not let past the notification POSTed before it.
            assert order == ["initialized", "tool"]


async def test_messages_queued_behind_a_busy_stream_are_bounded_and_answered_in_order():
    order: list[str] = []
    store = HeldStore(order)
    app = build(order).http_app(transport="sse", session_store=store)
    app.state.mcp_endpoint.broker = InProcessBroker(buffer=2)
    with serve(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
            endpoint = await initialize(http, events)
            assert (await http.post(endpoint, json=INITIALIZED)).status_code == 202
            await store.entered.wait()
            pings = [{"jsonrpc": "2.0", "id": n, "method": "ping"} for n in (10, 11, 12)]
            assert [(await http.post(endpoint, json=ping)).status_code for ping in pings[:2]] == [202, 202]
            refused = await http.post(endpoint, json=pings[2])
            assert refused.status_code == 503 and "waiting" in refused.json()["error"]["message"]
            assert refused.json()["id"] == 12
            store.opened.event.set()
            assert [(await events.message())["id"] for _ in range(2)] == [10, 11]
            # The refused request gave back what it took: the next one goes through.
            assert (await http.post(endpoint, json=call(13, "mark"))).status_code == 202
            assert (await events.message())["id"] == 13


async def test_calls_run_in_the_context_of_the_stream_not_of_their_post():
    # A host's per-request context (Django's thread-sensitive one) must outlive the call: the
    # stream's does, a POST's ends with its 202.
    order: list[str] = []
    with serve(MarkMethod(build(order).http_app(transport="sse"))) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
            endpoint = await initialize(http, events)
            assert (await http.post(endpoint, json=INITIALIZED)).status_code == 202
            for request_id in (2, 3):
                assert (await http.post(endpoint, json=call(request_id, "mark"))).status_code == 202
                reply = await events.message()
                assert reply["id"] == request_id and reply["result"]["content"][0]["text"] == "GET"


async def test_a_call_whose_client_left_is_cancelled_and_its_session_ends(caplog):
    entered, cancelled = Flag(), Flag()
    with serve(build([], entered, cancelled).http_app(transport="sse")) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            async with open_stream(http, "/sse") as events:
                endpoint = await initialize(http, events)
                assert (await http.post(endpoint, json=call(2, "hold"))).status_code == 202
                await entered.wait()
            # The client closed the stream while its call ran: the call is cancelled, not left running.
            with caplog.at_level(logging.ERROR, logger="mcp_asgi"):
                await cancelled.wait()
                with anyio.fail_after(5):
                    while (await http.post(endpoint, json=call(3, "mark"))).status_code != 404:
                        await anyio.sleep(0.05)
    assert not [record for record in caplog.records if record.name == "mcp_asgi"]


async def test_a_long_query_still_names_its_session():
    # Short queries are remembered per string; a long one is parsed each time, never kept.
    order: list[str] = []
    with serve(build(order).http_app(transport="sse")) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http, open_stream(http, "/sse") as events:
            endpoint = await initialize(http, events)
            session_id = endpoint.split("session_id=", 1)[1]
            long = f"/messages/?pad={'x' * 300}&sessionId={session_id}"
            assert (await http.post(long, json=call(2, "mark"))).status_code == 202
            assert (await events.message())["id"] == 2
            unknown = f"/messages/?pad={'x' * 300}&session_id=nope"
            assert (await http.post(unknown, json=call(3, "mark"))).status_code == 404
