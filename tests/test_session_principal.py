"""Sessions belong to their creator: another principal holding the session id gets the unknown-session 404.

On a real uvicorn, two hosts: a Starlette app with `AuthenticationMiddleware` (a tiny
bearer-token backend) mounting the MCP apps, and plain `http_app()`s where only the
`Authorization` header tells Alice from Bob. Alice's session must work for Alice only,
on every route: POST, GET, GET with `Last-Event-ID`, DELETE, the answer to a pending
elicitation, and the legacy HTTP+SSE message endpoint.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pydantic
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from mcp_asgi import Context, MCPServer, mount
from tests.conftest import serve
from tests.http_helpers import ACCEPT

ALICE = {"authorization": "Bearer alice-token"}
BOB = {"authorization": "Bearer bob-token"}
NOBODY: dict[str, str] = {}
# A session id no server issued: what a stranger must be told is what this gets.
UNKNOWN_SESSION = "0" * 32
RANDOM_ID = re.compile(r"^mcp-asgi-[A-Za-z0-9_-]{22,}$")


class Person(pydantic.BaseModel):
    name: str


def build_server() -> MCPServer:
    mcp = MCPServer("Owned")

    @mcp.tool
    def add(a: int, b: int) -> int:
        return a + b

    @mcp.tool
    async def poll(ctx: Context) -> str:
        """One progress event, then the server closes the stream; the result must be resumed."""
        await ctx.report_progress(1, 2)
        await ctx.close_sse_stream()
        await anyio.sleep(0.05)
        await ctx.report_progress(2, 2)
        return "Alice's secret result"

    @mcp.tool
    async def greet(ctx: Context) -> str:
        answer = await ctx.elicit("What is your name?", Person)
        return f"Hello, {answer.data.name}!" if answer.accepted else "No name given."

    return mcp


class BearerNames(AuthenticationBackend):
    """`Bearer <name>-token...` is user <name>; anything else is anonymous."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or "-token" not in token:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(token.partition("-token")[0])


@contextlib.contextmanager
def auth_host() -> Iterator[tuple[str, str]]:
    app = Starlette(middleware=[Middleware(AuthenticationMiddleware, backend=BearerNames())])
    mount(app, "/mcp", build_server())
    mount(app, "/legacy", build_server().http_app(transport="sse", path="/sse"))
    with serve(app) as base:
        yield f"{base}/mcp", f"{base}/legacy/sse"


@contextlib.contextmanager
def plain_host() -> Iterator[tuple[str, str]]:
    with serve(build_server().http_app()) as base, serve(build_server().http_app(transport="sse")) as sse_base:
        yield f"{base}/mcp", f"{sse_base}/sse"


@pytest.fixture(scope="module", params=["auth-middleware", "authorization-header"])
def urls(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    with (auth_host if request.param == "auth-middleware" else plain_host)() as found:
        yield found


def call(request_id: int, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments or {}},
    }


def initialize_body(version: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }


def sse_events(text: str) -> list[dict[str, str]]:
    """Each SSE event as a dict of its fields; comments dropped."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            (name, value.removeprefix(" ")) for name, _, value in (line.partition(":") for line in block.splitlines())
        )
        fields.pop("", None)
        if fields:
            events.append(fields)
    return events


def data(events: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [json.loads(event["data"]) for event in events if event.get("data")]


class Owned:
    """Alice's 2025-11-25 session on the Streamable HTTP endpoint, and requests to it as anyone."""

    def __init__(self, http: httpx.AsyncClient, url: str, session_id: str) -> None:
        self.http, self.url, self.session_id = http, url, session_id

    def headers(self, who: dict[str, str], session_id: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "accept": ACCEPT,
            "mcp-session-id": session_id or self.session_id,
            "mcp-protocol-version": "2025-11-25",
            **who,
            **extra,
        }

    async def post(self, body: dict[str, Any], who: dict[str, str], session_id: str | None = None) -> httpx.Response:
        return await self.http.post(self.url, json=body, headers=self.headers(who, session_id))

    async def resume(self, last_event_id: str, who: dict[str, str], session_id: str | None = None) -> httpx.Response:
        headers = self.headers(who, session_id, accept="text/event-stream", **{"last-event-id": last_event_id})
        return await self.http.get(self.url, headers=headers)

    async def delete(self, who: dict[str, str], session_id: str | None = None) -> httpx.Response:
        return await self.http.delete(self.url, headers=self.headers(who, session_id))

    async def works(self) -> None:
        """Alice's session still answers her."""
        response = await self.post(call(99, "add", {"a": 2, "b": 3}), ALICE)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["content"][0]["text"] == "5"


async def open_session(http: httpx.AsyncClient, url: str, who: dict[str, str]) -> Owned:
    response = await http.post(url, json=initialize_body("2025-11-25"), headers={"accept": ACCEPT, **who})
    assert response.status_code == 200, response.text
    session = Owned(http, url, response.headers["mcp-session-id"])
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await session.post(initialized, who)).status_code == 202
    return session


@contextlib.asynccontextmanager
async def alice_session(url: str) -> AsyncIterator[Owned]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield await open_session(http, url, ALICE)


def assert_unknown(response: httpx.Response, unknown: httpx.Response) -> None:
    """A stranger's answer is byte for byte what a made-up session id gets: 404, same body."""
    assert response.status_code == unknown.status_code == 404
    assert response.content == unknown.content
    assert unknown.json()["error"]["message"].startswith("Session not found")


async def test_post_from_another_principal_is_the_unknown_session_404(urls):
    url, _ = urls
    async with alice_session(url) as alice:
        await alice.works()
        unknown = await alice.post(call(2, "add", {"a": 1, "b": 1}), ALICE, session_id=UNKNOWN_SESSION)
        for stranger in (BOB, NOBODY):
            assert_unknown(await alice.post(call(2, "add", {"a": 1, "b": 1}), stranger), unknown)
            ping = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            unknown_note = await alice.post(ping, ALICE, session_id=UNKNOWN_SESSION)
            assert_unknown(await alice.post(ping, stranger), unknown_note)
        await alice.works()


async def test_the_standalone_get_stream_is_only_for_the_creator(urls):
    url, _ = urls
    async with alice_session(url) as alice:
        get_headers = {"accept": "text/event-stream"}
        unknown = await alice.http.get(url, headers=alice.headers(ALICE, UNKNOWN_SESSION, **get_headers))
        for stranger in (BOB, NOBODY):
            assert_unknown(await alice.http.get(url, headers=alice.headers(stranger, **get_headers)), unknown)
        async with alice.http.stream("GET", url, headers=alice.headers(ALICE, **get_headers)) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
        await alice.works()


async def test_resuming_a_stream_with_last_event_id_is_only_for_the_creator(urls):
    url, _ = urls
    async with alice_session(url) as alice:
        poll = call(7, "poll")
        poll["params"]["_meta"] = {"progressToken": "p"}
        cut = sse_events((await alice.post(poll, ALICE)).text)
        assert [message["params"]["progress"] for message in data(cut)] == [1]  # the server closed it early
        last_event_id = cut[-1]["id"]

        unknown = await alice.resume(last_event_id, ALICE, session_id=UNKNOWN_SESSION)
        for stranger in (BOB, NOBODY):
            assert_unknown(await alice.resume(last_event_id, stranger), unknown)

        resumed = await alice.resume(last_event_id, ALICE)
        assert resumed.status_code == 200
        assert data(sse_events(resumed.text))[-1]["result"]["content"][0]["text"] == "Alice's secret result"
        await alice.works()


async def test_only_the_creator_can_end_the_session(urls):
    url, _ = urls
    async with alice_session(url) as alice:
        unknown = await alice.delete(ALICE, session_id=UNKNOWN_SESSION)
        for stranger in (BOB, NOBODY):
            assert_unknown(await alice.delete(stranger), unknown)
            await alice.works()  # the stranger's DELETE did not end it
        assert (await alice.delete(ALICE)).status_code == 200
        assert (await alice.post(call(3, "add", {"a": 1, "b": 1}), ALICE)).status_code == 404


async def test_a_pending_elicitation_is_answered_only_by_the_session_that_was_asked(urls):
    url, _ = urls
    async with alice_session(url) as alice:
        other = await open_session(alice.http, url, ALICE)  # Alice's own second session
        async with alice.http.stream("POST", url, json=call(5, "greet"), headers=alice.headers(ALICE)) as reply:
            lines = reply.aiter_lines()

            async def next_message() -> dict[str, Any]:
                with anyio.fail_after(5):
                    async for line in lines:
                        if line.startswith("data:") and line[5:].strip():
                            return json.loads(line[5:])
                raise AssertionError("the reply ended")

            asked = await next_message()
            assert asked["method"] == "elicitation/create"
            # Random, not a counter: no one answers a question they were not asked by guessing its id.
            assert RANDOM_ID.match(asked["id"]), asked["id"]

            def answer(name: str) -> dict[str, Any]:
                return {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": name}}}

            unknown = await alice.post(answer("Mallory"), ALICE, session_id=UNKNOWN_SESSION)
            for stranger in (BOB, NOBODY):
                assert_unknown(await alice.post(answer("Mallory"), stranger), unknown)
            # Another session, even Alice's own, was not asked: its answer is taken (202) but counts for nothing.
            assert (await other.post(answer("Mallory"), ALICE)).status_code == 202

            assert (await alice.post(answer("Alice"), ALICE)).status_code == 202
            result = await next_message()
        assert result["id"] == 5 and result["result"]["content"][0]["text"] == "Hello, Alice!"
        await alice.works()


class LegacyStream:
    """A legacy HTTP+SSE session opened by `who`: its message endpoint and the events of its stream."""

    def __init__(self, http: httpx.AsyncClient, response: httpx.Response, who: dict[str, str]) -> None:
        self.http, self.who = http, who
        self.lines = response.aiter_lines()
        self.endpoint = ""

    async def next(self) -> tuple[str, str]:
        event, lines = "message", []
        with anyio.fail_after(5):
            async for line in self.lines:
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    lines.append(line[5:].strip())
                elif line == "" and lines:
                    return event, "\n".join(lines)
        raise AssertionError("the stream ended")

    async def message(self) -> dict[str, Any]:
        event, text = await self.next()
        assert event == "message"
        return json.loads(text)

    async def post(self, body: dict[str, Any], who: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(self.endpoint, json=body, headers=self.who if who is None else who)


@contextlib.asynccontextmanager
async def legacy_session(http: httpx.AsyncClient, sse_url: str, who: dict[str, str]) -> AsyncIterator[LegacyStream]:
    async with http.stream("GET", sse_url, headers={"accept": "text/event-stream", **who}) as response:
        assert response.status_code == 200
        stream = LegacyStream(http, response, who)
        event, endpoint = await stream.next()
        assert event == "endpoint"
        stream.endpoint = str(httpx.URL(sse_url).join(endpoint))
        assert (await stream.post(initialize_body("2024-11-05"))).status_code == 202
        assert (await stream.message())["id"] == 0
        assert (await stream.post({"jsonrpc": "2.0", "method": "notifications/initialized"})).status_code == 202
        yield stream


async def test_the_legacy_sse_message_endpoint_is_only_for_the_creator(urls):
    _, sse_url = urls
    async with httpx.AsyncClient(timeout=10) as http, legacy_session(http, sse_url, ALICE) as alice:
        unknown = await http.post(
            str(httpx.URL(alice.endpoint).copy_with(query=b"session_id=" + UNKNOWN_SESSION.encode())),
            json=call(2, "add", {"a": 1, "b": 1}),
            headers=ALICE,
        )
        for stranger in (BOB, NOBODY):
            assert_unknown(await alice.post(call(2, "add", {"a": 1, "b": 1}), stranger), unknown)
        assert (await alice.post(call(3, "add", {"a": 20, "b": 22}))).status_code == 202
        reply = await alice.message()
        # Only Alice's own call was answered on her stream: the strangers' never reached it.
        assert reply["id"] == 3 and reply["result"]["content"][0]["text"] == "42"


async def test_a_legacy_sse_elicitation_is_answered_only_by_its_own_stream(urls):
    _, sse_url = urls
    async with (
        httpx.AsyncClient(timeout=10) as http,
        legacy_session(http, sse_url, ALICE) as alice,
        legacy_session(http, sse_url, ALICE) as other,
    ):
        assert (await alice.post(call(4, "greet"))).status_code == 202
        asked = await alice.message()
        assert asked["method"] == "elicitation/create" and RANDOM_ID.match(asked["id"]), asked

        def answer(name: str) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"name": name}}}

        for stranger in (BOB, NOBODY):
            assert (await alice.post(answer("Mallory"), stranger)).status_code == 404
        assert (await other.post(answer("Mallory"))).status_code == 202  # another stream was not asked
        assert (await alice.post(answer("Alice"))).status_code == 202
        result = await alice.message()
        assert result["id"] == 4 and result["result"]["content"][0]["text"] == "Hello, Alice!"


async def test_a_user_is_known_by_identity_not_by_token():
    """Behind auth middleware, the user is the principal: a refreshed token of the same user keeps the session."""
    with auth_host() as (url, _):
        async with alice_session(url) as alice:
            refreshed = {"authorization": "Bearer alice-token-refreshed"}
            assert (await alice.post(call(2, "add", {"a": 1, "b": 1}), refreshed)).status_code == 200
            assert (await alice.post(call(3, "add", {"a": 1, "b": 1}), BOB)).status_code == 404


async def test_official_client_works_with_a_bearer_header(urls):
    url, sse_url = urls

    async def on_elicit(context: Any, params: Any) -> Any:
        return types.ElicitResult(action="accept", content={"name": "Alice"})

    http = create_mcp_http_client(headers={"Authorization": "Bearer alice-token"})
    streamable = streamable_http_client(url, http_client=http)
    async with Client(streamable, mode="legacy", elicitation_callback=on_elicit) as c:
        assert (await c.call_tool("add", {"a": 2, "b": 40})).content[0].text == "42"
        assert (await c.call_tool("greet", {})).content[0].text == "Hello, Alice!"
    legacy = sse_client(sse_url, headers={"Authorization": "Bearer alice-token"})
    async with Client(legacy, mode="legacy", elicitation_callback=on_elicit) as c:
        assert (await c.call_tool("add", {"a": 1, "b": 2})).content[0].text == "3"
        assert (await c.call_tool("greet", {})).content[0].text == "Hello, Alice!"
