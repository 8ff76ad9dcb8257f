"""The request path: one way a request is built and answered, and the fixes that live on it."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from mcp_asgi import Context, MCPServer
from mcp_asgi.components.tools import Tool
from mcp_asgi.protocol.registry import Registry
from mcp_asgi.transports.conversation import Conversation
from tests.http_helpers import ACCEPT, client_for, modern_request


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    # Threads take turns every microsecond instead of every 5 ms, so a race shows in a short test.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


async def test_sync_tool_changing_tools_never_breaks_a_concurrent_listing(fast_thread_switches: None) -> None:
    mcp = MCPServer("churn")
    for i in range(200):
        mcp.tool(name=f"fixed_{i}")(lambda: "x")
    spare = [Tool(lambda: "y", name=f"temp_{i}") for i in range(5)]
    stop = threading.Event()

    @mcp.tool
    def churn() -> int:
        """Add and remove tools from a worker thread until told to stop."""
        rounds = 0
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            # A batch at a time: the tool count stays changed long enough for a listing to overlap.
            for tool in spare:
                mcp.add_tool(tool)
            for tool in spare:
                mcp.remove_tool(tool.name)
            rounds += 1
        return rounds

    async with client_for(mcp.http_app()) as client:
        body, headers = modern_request("tools/call", {"name": "churn", "arguments": {}})
        statuses: list[int] = []

        async def lister() -> None:
            try:
                for n in range(200):
                    listing, list_headers = modern_request("tools/list", request_id=100 + n)
                    response = await client.post("/mcp", json=listing, headers=list_headers)
                    statuses.append(response.status_code)
                    assert "error" not in response.json(), response.text
                    await anyio.sleep(0)
            finally:
                stop.set()

        async with anyio.create_task_group() as group:
            group.start_soon(lister)
            response = await client.post("/mcp", json=body, headers=headers)
        assert response.status_code == 200
        result = response.json()["result"]
        assert "isError" not in result, result
        # How many add/remove rounds overlap the 200 listings depends on thread scheduling;
        # at least one must have, or the race under test never happened.
        assert result["structuredContent"]["result"] >= 1
        assert statuses == [200] * 200


def test_tool_options_are_one_list_and_unknown_ones_are_named() -> None:
    mcp = MCPServer("options")
    with pytest.raises(TypeError, match="Unknown tool option\\(s\\): colour"):
        mcp.tool(colour="red")(lambda: "x")  # type: ignore[call-arg]
    mcp.tool(name="titled", title="A title", structured_output=False)(lambda: "x")
    assert mcp._tools["titled"].definition["title"] == "A title"
    assert "outputSchema" not in mcp._tools["titled"].definition


@pytest.mark.parametrize(
    ("old", "new"), [("Header", "ParamHeader"), ("File", "FileContent"), ("Message", "PromptMessage")]
)
def test_old_public_names_still_work_and_warn(old: str, new: str) -> None:
    import mcp_asgi

    with pytest.warns(DeprecationWarning, match=f"mcp_asgi.{old} is deprecated.*use mcp_asgi.{new}"):
        value = getattr(mcp_asgi, old)
    assert value is getattr(mcp_asgi, new)
    assert old not in mcp_asgi.__all__ and new in mcp_asgi.__all__


def test_unknown_attribute_of_the_package_is_still_an_attribute_error() -> None:
    import mcp_asgi

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        mcp_asgi.Nope  # noqa: B018


# Fixes on the request path. Each server here is a real MCPServer served in-process over ASGI.
def _fixes_server() -> tuple[MCPServer, dict[str, anyio.Event]]:
    mcp = MCPServer("fixes")
    events = {"asking": anyio.Event(), "release": anyio.Event()}
    finished: list[str] = []

    @mcp.tool
    async def echo_body(ctx: Context) -> str:
        """Return the raw HTTP body of this very request."""
        assert ctx.request is not None
        return (await ctx.request.body()).decode()

    @mcp.tool
    async def ask_user(ctx: Context) -> str:
        events["asking"].set()
        try:
            answer = await ctx.elicit("Name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        finally:
            finished.append("ask_user")
        return str(answer)

    @mcp.tool
    async def wait_for_release() -> str:
        events["asking"].set()
        await events["release"].wait()
        return "released"

    @mcp.tool
    def quick() -> str:
        return "quick"

    @mcp.resource("data://secret")
    def secret() -> str:
        raise RuntimeError("db password=hunter2 at /srv/app.py")

    mcp.finished = finished  # type: ignore[attr-defined]
    return mcp, events


async def _session(client: httpx.AsyncClient, capabilities: dict[str, Any] | None = None) -> dict[str, str]:
    response = await client.post(
        "/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": capabilities or {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        },
        headers={"accept": ACCEPT},
    )
    assert response.status_code == 200, response.text
    return {
        "accept": ACCEPT,
        "mcp-session-id": response.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-11-25",
    }


def _call(tool: str, request_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": tool, "arguments": {}}}


async def test_set_level_with_a_non_string_level_is_invalid_params() -> None:
    mcp, _ = _fixes_server()
    async with client_for(mcp.http_app()) as client:
        headers = await _session(client)
        request = {"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": []}}
        response = await client.post("/mcp", json=request, headers=headers)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == -32602


async def test_modern_log_level_that_is_not_a_string_is_400_invalid_params() -> None:
    mcp, _ = _fixes_server()
    async with client_for(mcp.http_app()) as client:
        body, headers = modern_request("tools/list", {"_meta": {"io.modelcontextprotocol/logLevel": []}})
        response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602
    assert "io.modelcontextprotocol/logLevel must be one of debug" in error["message"]


async def test_every_missing_modern_meta_field_is_reported_at_once() -> None:
    mcp, _ = _fixes_server()
    async with client_for(mcp.http_app()) as client:
        body, headers = modern_request("tools/list")
        body["params"]["_meta"] = {"io.modelcontextprotocol/logLevel": "loud"}
        response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602
    assert error["message"] == (
        "Invalid params: `_meta` is missing io.modelcontextprotocol/protocolVersion; "
        "`_meta` is missing io.modelcontextprotocol/clientCapabilities; "
        "io.modelcontextprotocol/logLevel must be one of "
        "debug, info, notice, warning, error, critical, alert, emergency"
    )


@pytest.mark.parametrize("request_id", [[], {}, [1], True])
async def test_cancel_naming_no_valid_request_id_is_ignored_over_http(request_id: Any) -> None:
    mcp, _ = _fixes_server()
    async with client_for(mcp.http_app()) as client:
        headers = await _session(client)
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
        response = await client.post("/mcp", json=cancel, headers=headers)
        assert response.status_code == 202
        response = await client.post("/mcp", json=_call("quick"), headers=headers)
    assert response.json()["result"]["content"][0]["text"] == "quick"


@pytest.mark.parametrize("request_id", [[], {}])
async def test_cancel_naming_no_valid_request_id_is_ignored_over_a_channel(request_id: Any) -> None:
    mcp, _ = _fixes_server()
    written: list[dict[str, Any]] = []

    async def write(message: dict[str, Any]) -> None:
        written.append(message)

    async with anyio.create_task_group() as group:
        conversation = Conversation(mcp, write, group)
        await conversation.receive(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
        )
        await conversation.receive(
            {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}
        )
        await conversation.receive({"jsonrpc": "2.0", "id": 2, "method": "ping"})
        with anyio.fail_after(5):
            while len(written) < 2:
                await anyio.sleep(0.01)
        conversation.stop_following()  # as stdio does when its input ends
    assert [message.get("id") for message in written] == [1, 2]
    assert written[1]["result"] == {}


async def test_internal_errors_carry_no_exception_text(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault of the server itself, not of user code (user code errors follow mask_error_details,
    # see tests/test_mask_errors.py): the registry breaks while listing.
    mcp, _ = _fixes_server()

    def broken(registry: Registry, kind: str) -> list:
        raise RuntimeError("db password=hunter2 at /srv/app.py")

    monkeypatch.setattr(Registry, "snapshot", broken)
    async with client_for(mcp.http_app()) as client:
        body, headers = modern_request("resources/list", {})
        with caplog.at_level(logging.ERROR, logger="mcp_asgi"):
            response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["error"] == {"code": -32603, "message": "Internal error"}
    assert "hunter2" not in response.text
    assert any(record.exc_info and "hunter2" in str(record.exc_info[1]) for record in caplog.records)


@pytest.mark.parametrize("modern", [True, False])
async def test_request_body_is_readable_inside_a_tool(modern: bool) -> None:
    mcp, _ = _fixes_server()
    async with client_for(mcp.http_app()) as client:
        if modern:
            body, headers = modern_request("tools/call", {"name": "echo_body", "arguments": {}})
        else:
            body, headers = _call("echo_body"), await _session(client)
        raw = json.dumps(body).encode()
        with anyio.fail_after(5):
            response = await client.post("/mcp", content=raw, headers={**headers, "content-type": "application/json"})
    assert response.json()["result"]["content"][0]["text"] == raw.decode()


async def test_delete_ends_the_sessions_calls_at_once() -> None:
    mcp, events = _fixes_server()
    async with client_for(mcp.http_app()) as client:
        headers = await _session(client, {"elicitation": {}})
        responses: list[httpx.Response] = []

        async def call() -> None:
            responses.append(await client.post("/mcp", json=_call("ask_user"), headers=headers))

        with anyio.fail_after(5):  # the client-request timeout is 300 s
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await events["asking"].wait()
                await anyio.sleep(0.05)  # the elicitation request is on its way
                deleted = await client.delete("/mcp", headers=headers)
    assert deleted.status_code == 200
    assert mcp.finished == ["ask_user"]  # type: ignore[attr-defined]
    # The call's stream ends without a result: the session it belonged to is gone.
    assert '"result"' not in responses[0].text


async def test_a_request_id_already_in_flight_on_the_session_is_refused() -> None:
    mcp, events = _fixes_server()
    async with client_for(mcp.http_app()) as client:
        headers = await _session(client)
        first: list[httpx.Response] = []

        async def call() -> None:
            first.append(await client.post("/mcp", json=_call("wait_for_release", 7), headers=headers))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await events["asking"].wait()
                second = await client.post("/mcp", json=_call("quick", 7), headers=headers)
                events["release"].set()
    assert second.status_code == 400
    assert second.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32600, "message": "Invalid Request: request id 7 is already in flight"},
    }
    assert first[0].json()["result"]["content"][0]["text"] == "released"
