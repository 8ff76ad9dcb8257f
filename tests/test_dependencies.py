"""FastAPI dependencies in tools, resources and prompts, through a real uvicorn and the official client."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi.concurrency import contextmanager_in_threadpool
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError as ClientError

from mcp_asgi.dependencies import HTTP_STATUS_META
from tests import dependency_servers as deps
from tests.conftest import serve
from tests.http_helpers import MODERN, modern_request
from tests.test_cancellation import wait_for

MODES = ["legacy", MODERN]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(deps.build_app()) as base:
        yield f"{base}/mcp"


@pytest.fixture(autouse=True)
def fresh_events() -> None:
    deps.EVENTS.clear()
    deps.STARTED.clear()


def client(url: str, mode: str, **headers: str) -> Client:
    http = create_mcp_http_client(headers=headers)
    return Client(streamable_http_client(url, http_client=http), mode=mode)


async def events_until(last: str, timeout: float = 5) -> list[str]:
    """EVENTS once `last` is among them (cleanup may end just after the reply was sent)."""
    with anyio.move_on_after(timeout):
        while last not in deps.EVENTS:
            await anyio.sleep(0.02)
    return list(deps.EVENTS)


@pytest.mark.parametrize("mode", MODES)
async def test_dependency_fed_parameters_are_not_in_the_schema_and_the_client_cannot_set_them(url, mode):
    async with client(url, mode, **{"x-user": "ann", "cookie": "theme=dark"}) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        assert tools["whoami"].input_schema["properties"].keys() == {"note"}
        assert tools["whoami"].input_schema["required"] == ["note"]
        assert tools["raw_request"].input_schema["properties"] == {}
        assert tools["traced"].input_schema["properties"].keys() == {"mode"}
        # The argument named like the dependency is ignored, as any unknown argument: the header decides.
        result = await mcp.call_tool("whoami", {"note": "hi", "user": "root", "colour": "red"})
        assert result.is_error is False
        assert result.structured_content == {"user": "ann", "theme": "dark", "note": "hi"}


@pytest.mark.parametrize("mode", MODES)
async def test_a_dependency_reads_a_header_and_a_cookie_and_its_default(url, mode):
    async with client(url, mode, **{"x-user": "bea"}) as mcp:
        result = await mcp.call_tool("whoami", {"note": "n"})
        assert result.structured_content == {"user": "bea", "theme": "light", "note": "n"}


@pytest.mark.parametrize("mode", MODES)
async def test_yield_dependencies_close_after_the_call_in_reverse_order(url, mode):
    async with client(url, mode) as mcp:
        result = await mcp.call_tool("traced", {"mode": "ok"})
        assert result.content[0].text == "done"
    assert await events_until("inner close") == [
        "inner open",
        "outer open",
        "tool got outer+inner",
        "outer close",
        "inner close",
    ]


@pytest.mark.parametrize("mode", MODES)
async def test_yield_dependencies_see_the_tools_exception_and_still_close(url, mode):
    async with client(url, mode) as mcp:
        result = await mcp.call_tool("traced", {"mode": "fail"})
        assert result.is_error is True and "boom" in result.content[0].text
    assert await events_until("inner close") == [
        "inner open",
        "outer open",
        "tool got outer+inner",
        "outer saw ValueError",
        "outer close",
        "inner saw ValueError",
        "inner close",
    ]


async def test_yield_dependencies_close_when_the_call_is_cancelled(url):
    body, headers = modern_request("tools/call", {"name": "traced", "arguments": {"mode": "wait"}})
    async with httpx.AsyncClient(timeout=10) as http:
        async with anyio.create_task_group() as group:

            async def post() -> None:
                await http.post(url, json=body, headers=headers)

            group.start_soon(post)
            assert await wait_for(deps.STARTED)
            group.cancel_scope.cancel()  # the client goes away mid-call: the call is cancelled
    events = await events_until("inner close")
    assert events[:3] == ["inner open", "outer open", "tool got outer+inner"]
    # Older FastAPI never passes a cancellation into a sync generator dependency (its
    # contextmanager_in_threadpool catches Exception only): Python closes it, with GeneratorExit.
    passes_it = "except BaseException" in inspect.getsource(contextmanager_in_threadpool)
    seen = "CancelledError" if passes_it else "GeneratorExit"
    assert events[3:] == [f"outer saw {seen}", "outer close", "inner saw CancelledError", "inner close"]


@pytest.mark.parametrize("mode", MODES)
async def test_security_scopes_reach_the_dependency(url, mode):
    async with client(url, mode, **{"x-user": "cy"}) as mcp:
        result = await mcp.call_tool("scoped", {})
        assert result.content[0].text == "cy:notes:read notes:write"


@pytest.mark.parametrize("mode", MODES)
async def test_dependencies_are_cached_per_call_unless_asked_not_to(url, mode):
    async with client(url, mode) as mcp:
        first = (await mcp.call_tool("counted", {})).structured_content["result"]
        second = (await mcp.call_tool("counted", {})).structured_content["result"]
    # a and b share one solve of `counter` per call; c (use_cache=False) gets its own.
    assert first[0] == first[1] and first[2] == first[0] + 1
    assert second[0] == first[2] + 1 and second[0] == second[1] and second[2] == second[0] + 1


@pytest.mark.parametrize("mode", MODES)
async def test_a_request_parameter_gets_the_request_as_a_route_of_the_host_app_would(url, mode):
    async with client(url, mode, **{"x-user": "dee"}) as mcp:
        result = await mcp.call_tool("raw_request", {"request": "forged"})
        assert result.structured_content == {"user": "dee", "app": "FastAPI"}


@pytest.mark.parametrize("mode", MODES)
async def test_the_host_apps_dependency_overrides_apply(url, mode):
    async with client(url, mode) as mcp:
        assert (await mcp.call_tool("flagged", {})).content[0].text == "overridden"


@pytest.mark.parametrize("mode", MODES)
async def test_an_http_exception_from_a_dependency_is_a_tool_error_with_its_status(url, mode):
    async with client(url, mode) as mcp:
        missing = await mcp.call_tool("whoami", {"note": "x"})
        assert missing.is_error is True
        assert missing.content[0].text == "Send X-User"
        assert missing.meta[HTTP_STATUS_META] == 401
    async with client(url, mode, **{"x-user": "eve"}) as mcp:
        refused = await mcp.call_tool("admin", {})
        assert refused.is_error is True and refused.content[0].text == "eve is not an admin"
        assert refused.meta[HTTP_STATUS_META] == 403
    async with client(url, mode, **{"x-user": "root"}) as mcp:
        assert (await mcp.call_tool("admin", {})).content[0].text == "welcome root"


@pytest.mark.parametrize("mode", MODES)
async def test_a_request_that_does_not_fit_the_dependencies_is_a_422_tool_error(url, mode):
    async with client(url, mode) as mcp:
        result = await mcp.call_tool("keyed", {"key": "forged"})
        assert result.is_error is True
        assert result.content[0].text == (
            "The HTTP request does not satisfy the dependencies: header x-api-key: Field required"
        )
        assert result.meta[HTTP_STATUS_META] == 422
    async with client(url, mode, **{"x-api-key": "k1"}) as mcp:
        assert (await mcp.call_tool("keyed", {})).content[0].text == "k1"


@pytest.mark.parametrize("mode", MODES)
async def test_an_http_exception_from_the_tool_keeps_a_structured_detail(url, mode):
    async with client(url, mode) as mcp:
        result = await mcp.call_tool("refuse", {})
        assert result.is_error is True
        assert result.content[0].text == 'Conflict: {"reason":"conflict","id":7}'
        assert result.meta[HTTP_STATUS_META] == 409


@pytest.mark.parametrize("mode", MODES)
async def test_resources_and_prompts_take_dependencies(url, mode):
    async with client(url, mode, **{"x-user": "fay"}) as mcp:
        assert (await mcp.read_resource("notes://mine")).contents[0].text == "notes of fay"
        templates = (await mcp.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["notes://admin/{name}"]
        prompts = {p.name: p for p in (await mcp.list_prompts()).prompts}
        assert [a.name for a in prompts["greet"].arguments] == ["style"]
        prompt = await mcp.get_prompt("greet", {"style": "warm", "user": "mallory"})
        assert prompt.messages[0].content.text == "Greet fay in a warm way"


@pytest.mark.parametrize("mode", MODES)
async def test_an_http_exception_in_a_resource_or_prompt_is_a_json_rpc_error_saying_so(url, mode):
    async def error_of(call: Any) -> ClientError:
        with pytest.raises(ClientError) as caught:
            await call
        return caught.value

    async with client(url, mode, **{"x-user": "gus"}) as mcp:
        forbidden = await error_of(mcp.read_resource("notes://admin/plans"))
        assert (forbidden.code, forbidden.message) == (-32003, "gus is not an admin")
        assert forbidden.data == {"httpStatus": 403}
    async with client(url, mode) as mcp:
        unauthorized = await error_of(mcp.get_prompt("greet", {"style": "warm"}))
        assert (unauthorized.code, unauthorized.message) == (-32001, "Send X-User")
        assert unauthorized.data == {"httpStatus": 401}
