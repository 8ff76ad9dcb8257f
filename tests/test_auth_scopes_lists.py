"""`hide_unauthorized` lists, scopes checked at decoration, and what other clients and transports see.

HTTP cases run on a real uvicorn with the host of tests/scoped_servers.py: `/mcp`
lists every component, `/hidden/mcp` is the same server with `hide_unauthorized=True`
and two items per page.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError as ClientError

from mcp_asgi import MCPServer
from mcp_asgi.components.tools import Tool
from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR, MCPError
from mcp_asgi.transports.http_common import send_error
from tests.fixtures.procs import FIXTURES, ROOT
from tests.http_helpers import MODERN
from tests.scoped_servers import INSUFFICIENT_SCOPE, SCOPES_HEADER, Endpoint, auth_host

VERSIONS = [MODERN, "2025-11-25"]
RAN: list[str] = []
ALL_TOOLS = ["write_note", "move_note", "echo", "read_secret_later"]
LISTS = [
    ("tools/list", "tools"),
    ("resources/list", "resources"),
    ("resources/templates/list", "resourceTemplates"),
    ("prompts/list", "prompts"),
]


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with auth_host(RAN) as found:
        yield found


@pytest.fixture(params=VERSIONS)
async def hidden(request: pytest.FixtureRequest, base: str) -> AsyncIterator[Endpoint]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield await Endpoint(http, f"{base}/hidden/mcp", request.param).open()


async def test_hide_unauthorized_lists_only_what_the_scopes_allow_on_every_page(hidden):
    # Two per page: the cursor walks the caller's own filtered list, so no page repeats or skips.
    assert (await hidden.list_all("tools/list", "tools", ""))[0] == ["echo", "read_secret_later"]
    assert (await hidden.list_all("tools/list", "tools", "notes:write"))[0] == [
        "write_note",
        "echo",
        "read_secret_later",
    ]
    assert (await hidden.list_all("tools/list", "tools", "notes:read notes:write"))[0] == ALL_TOOLS
    assert (await hidden.list_all("resources/list", "resources", ""))[0] == ["notes://public"]
    assert (await hidden.list_all("resources/list", "resources", "notes:read"))[0] == [
        "notes://secret",
        "notes://public",
    ]
    templates = await hidden.list_all("resources/templates/list", "resourceTemplates", "")
    assert templates[0] == ["notes://tags/{tag}"]
    assert (await hidden.list_all("prompts/list", "prompts", ""))[0] == ["hello"]
    assert (await hidden.list_all("prompts/list", "prompts", "notes:read"))[0] == ["summarize", "hello"]


@pytest.mark.parametrize(("method", "key"), LISTS)
async def test_a_filtered_list_is_cached_privately_on_every_page(hidden, method, key):
    _, cache_scopes = await hidden.list_all(method, key, "notes:read notes:write")
    # Even a caller who sees everything got a list that depends on who asked: never "public".
    assert cache_scopes == ({"private"} if hidden.version == MODERN else set())


async def test_a_hidden_tool_called_by_name_is_still_the_403_challenge(hidden):
    response = await hidden.request("tools/call", {"name": "write_note", "arguments": {"text": "h-call"}}, "")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == INSUFFICIENT_SCOPE
    assert "h-call" not in RAN


@pytest.mark.parametrize("version", VERSIONS)
async def test_by_default_scoped_components_are_listed_to_everyone_and_publicly_cacheable(base, version):
    async with httpx.AsyncClient(timeout=10) as http:
        listed = await Endpoint(http, f"{base}/mcp", version).open()
        names, cache_scopes = await listed.list_all("tools/list", "tools", "")
        assert names == ALL_TOOLS
        assert cache_scopes == ({"public"} if version == MODERN else set())
        assert (await listed.list_all("prompts/list", "prompts", ""))[0] == ["summarize", "hello"]


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_official_client_sees_the_403_as_an_error_and_succeeds_with_the_scope(base, mode):
    async def call(scopes: str) -> Any:
        http = create_mcp_http_client(headers={SCOPES_HEADER: scopes})
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client:
            try:
                return await client.call_tool("write_note", {"text": f"sdk-{mode}-{scopes}"})
            except ClientError as error:
                return error

    refused = await call("notes:read")
    assert isinstance(refused, ClientError)
    assert refused.code == INSUFFICIENT_SCOPE
    assert "notes:write" in refused.message
    assert f"sdk-{mode}-notes:read" not in RAN
    assert (await call("notes:write")).content[0].text == "saved"


async def test_legacy_sse_refuses_on_the_stream_with_the_streams_scopes(base):
    # Legacy HTTP+SSE answers each POST 202 before the call runs: the refusal is the JSON-RPC
    # error on the stream, checked against the scopes of the request that opened the stream.
    async def call(scopes: str) -> Any:
        legacy = sse_client(f"{base}/legacy/sse", headers={SCOPES_HEADER: scopes})
        async with Client(legacy, mode="legacy") as client:
            try:
                return await client.call_tool("write_note", {"text": f"sse-{scopes}"})
            except ClientError as error:
                return error

    refused = await call("")
    assert isinstance(refused, ClientError)
    assert refused.code == INSUFFICIENT_SCOPE
    assert refused.data == {"requiredScopes": ["notes:write"]}
    assert "sse-" not in RAN
    assert (await call("notes:write")).content[0].text == "saved"


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_stdio_is_not_checked_and_lists_everything(mode):
    # A local process is trusted like its user: no token, no scopes to check, nothing hidden.
    script = str(FIXTURES / "scoped_stdio_server.py")
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_asgi", "run", script], cwd=str(ROOT))
    async with Client(params, mode=mode) as client:
        assert [tool.name for tool in (await client.list_tools()).tools] == ALL_TOOLS
        assert (await client.call_tool("write_note", {"text": "stdio"})).content[0].text == "saved"
        assert (await client.read_resource("notes://by-id/7")).contents[0].text == "note 7"
        assert len((await client.list_prompts()).prompts) == 2


def test_error_headers_go_out_with_an_error_answered_before_any_reply():
    # The path of errors raised outside a call (the legacy SSE POST, the guard, a body too large).
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    error = MCPError(INTERNAL_ERROR, "no", http_status=403, headers={"WWW-Authenticate": 'Bearer error="x"'})
    anyio.run(send_error, send, error, 1, [(b"allow", b"POST")])
    assert sent[0]["status"] == 403
    assert (b"allow", b"POST") in sent[0]["headers"]
    assert (b"www-authenticate", b'Bearer error="x"') in sent[0]["headers"]


def noop() -> str:
    return ""


def by_id(id: str) -> str:
    return id


@pytest.mark.parametrize(
    ("scopes", "exception", "words"),
    [
        ("notes:write", TypeError, "must be a list of scope strings"),
        ({"notes:write": True}, TypeError, "must be a list of scope strings"),
        ([1], TypeError, "each scope must be a string"),
        ([""], ValueError, "is not a valid OAuth scope"),
        (["notes:read notes:write"], ValueError, "list several scopes as separate strings"),
        (['a"b'], ValueError, "no spaces, quotes or backslashes"),
        (["caf\u00e9"], ValueError, "printable ASCII"),
    ],
)
def test_bad_scopes_fail_at_decoration_naming_the_component(scopes, exception, words):
    mcp = MCPServer("bad")
    with pytest.raises(exception, match=words) as raised:
        mcp.tool(name="delete_all", scopes=scopes)(noop)
    assert "tool 'delete_all'" in str(raised.value)
    with pytest.raises(exception, match="resource 'data://x'"):
        mcp.resource("data://x", scopes=scopes)(noop)
    with pytest.raises(exception, match="resource 'data://{id}'"):
        mcp.resource("data://{id}", scopes=scopes)(by_id)
    with pytest.raises(exception, match="prompt 'p'"):
        mcp.prompt(name="p", scopes=scopes)(noop)
    with pytest.raises(exception, match="tool 'direct'"):
        Tool(noop, name="direct", scopes=scopes)
    assert mcp._tools == {}


def test_scopes_are_kept_in_order_without_repeats_and_sets_are_sorted():
    mcp = MCPServer("ok")
    mcp.tool(name="a", scopes=["z", "a", "z"])(noop)
    mcp.add_tool(Tool(noop, name="b", scopes={"y", "b"}))
    mcp.tool(name="c", scopes=[])(noop)
    assert mcp._tools["a"].scopes == ("z", "a")
    assert mcp._tools["b"].scopes == ("b", "y")
    assert mcp._tools["c"].scopes == ()
    # Scopes are the server's business: they do not leak into the tool's definition.
    assert "scopes" not in str(mcp._tools["a"].definition)


def test_hide_unauthorized_must_be_a_bool():
    with pytest.raises(TypeError, match="`hide_unauthorized` must be True or False"):
        MCPServer("x", hide_unauthorized="yes")  # type: ignore[arg-type]
