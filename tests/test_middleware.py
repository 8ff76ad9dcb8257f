"""MCP middleware: order, short-circuits, rewriting, replacing, failures, and every transport."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from mcp_asgi import Context, MCPError, MCPRequest, MCPServer, ToolError
from tests.conftest import serve
from tests.fixtures.procs import FIXTURES, ROOT
from tests.http_helpers import ACCEPT, client_for, initialize, modern_request


async def post_modern(app: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body, headers = modern_request(method, params)
    async with client_for(app) as client:
        response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code in (200, 404), response.text
    return response.json()


async def call_tool(app: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    reply = await post_modern(app, "tools/call", {"name": name, "arguments": arguments})
    assert "result" in reply, reply
    return reply["result"]


def server(*middleware: Any, **options: Any) -> MCPServer:
    mcp = MCPServer("mw", telemetry=False, middleware=list(middleware), **options)

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @mcp.tool
    def boom() -> str:
        raise RuntimeError("tool exploded")

    @mcp.resource("data://config")
    def config() -> str:
        return "cfg"

    @mcp.prompt
    def greet(name: str) -> str:
        return f"Hello, {name}"

    return mcp


class Recorder:
    """Logs entering and leaving each hook, under its label."""

    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log

    async def on_request(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
        self.log.append(f"{self.label}.request>{request.method}")
        result = await call_next(request)
        self.log.append(f"<{self.label}.request")
        return result

    async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
        self.log.append(f"{self.label}.call_tool>{request.name}")
        result = await call_next(request)
        self.log.append(f"<{self.label}.call_tool")
        return result


# Order.
async def test_first_added_is_outermost_and_on_request_wraps_the_specific_hook():
    log: list[str] = []
    mcp = server(Recorder("A", log))
    mcp.add_middleware(Recorder("B", log))

    @mcp.tool
    def traced(x: int) -> int:
        log.append("tool")
        return x

    assert (await call_tool(mcp.http_app(), "traced", {"x": 1}))["structuredContent"] == {"result": 1}
    assert log == [
        "A.request>tools/call",
        "A.call_tool>traced",
        "B.request>tools/call",
        "B.call_tool>traced",
        "tool",
        "<B.call_tool",
        "<B.request",
        "<A.call_tool",
        "<A.request",
    ]


async def test_on_request_sees_every_request_and_specific_hooks_only_theirs():
    seen: list[tuple[str, str]] = []

    class Everything:
        async def on_request(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.append(("request", request.method))
            return await call_next(request)

        async def on_list_tools(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.append(("list_tools", request.method))
            return await call_next(request)

        async def on_read_resource(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.append(("read_resource", request.name or ""))
            return await call_next(request)

        async def on_get_prompt(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.append(("get_prompt", request.name or ""))
            return await call_next(request)

        async def on_list_resources(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.append(("list_resources", request.method))
            return await call_next(request)

        async def on_list_resource_templates(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.append(("list_resource_templates", request.method))
            return await call_next(request)

        async def on_list_prompts(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.append(("list_prompts", request.method))
            return await call_next(request)

    app = server(Everything()).http_app()
    for method, params in [
        ("server/discover", None),
        ("tools/list", None),
        ("resources/list", None),
        ("resources/templates/list", None),
        ("prompts/list", None),
        ("resources/read", {"uri": "data://config"}),
        ("prompts/get", {"name": "greet", "arguments": {"name": "Ann"}}),
    ]:
        assert "result" in await post_modern(app, method, params)
    assert seen == [
        ("request", "server/discover"),
        ("request", "tools/list"),
        ("list_tools", "tools/list"),
        ("request", "resources/list"),
        ("list_resources", "resources/list"),
        ("request", "resources/templates/list"),
        ("list_resource_templates", "resources/templates/list"),
        ("request", "prompts/list"),
        ("list_prompts", "prompts/list"),
        ("request", "resources/read"),
        ("read_resource", "data://config"),
        ("request", "prompts/get"),
        ("get_prompt", "greet"),
    ]


async def test_a_method_no_middleware_hooks_is_dispatched_as_without_middleware():
    class ToolsOnly:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            return await call_next(request)

    plain = MCPServer("plain", telemetry=False)
    assert plain._core._handlers is plain._core._base_handlers
    hooked = MCPServer("hooked", telemetry=False, middleware=[ToolsOnly()])
    handlers, base = hooked._core._handlers, hooked._core._base_handlers
    assert handlers["tools/call"] is not base["tools/call"]
    assert all(handlers[m] is base[m] for m in base if m != "tools/call")


# Short-circuits.
async def test_mcp_error_from_a_hook_answers_with_that_error_and_the_tool_never_runs():
    ran: list[int] = []

    class Deny:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            raise MCPError(-32001, "Rate limit exceeded", {"retryAfter": 3})

    mcp = server(Deny())

    @mcp.tool
    def counted() -> int:
        ran.append(1)
        return 1

    reply = await post_modern(mcp.http_app(), "tools/call", {"name": "counted", "arguments": {}})
    assert reply["error"] == {"code": -32001, "message": "Rate limit exceeded", "data": {"retryAfter": 3}}
    assert ran == []


async def test_tool_error_from_a_hook_is_an_error_result_for_tools_and_32603_elsewhere():
    class Refuse:
        async def on_request(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            if request.method in ("tools/call", "resources/read"):
                raise ToolError(f"not allowed: {request.name}")
            return await call_next(request)

    app = server(Refuse()).http_app()
    assert await call_tool(app, "add", {"a": 1, "b": 2}) == {
        "content": [{"type": "text", "text": "not allowed: add"}],
        "isError": True,
        "resultType": "complete",
        "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "mw", "version": "0.1.0"}},
    }
    read = await post_modern(app, "resources/read", {"uri": "data://config"})
    assert read["error"] == {"code": -32603, "message": "not allowed: data://config"}


async def test_an_outer_layer_sees_an_inner_refusal_as_the_client_will():
    outcomes: list[Any] = []

    class Audit:
        async def on_request(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            try:
                result = await call_next(request)
            except MCPError as error:
                outcomes.append(error.code)
                raise
            outcomes.append(result.get("isError", False))
            return result

    class Refuse:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            if request.name == "boom":
                raise ToolError("refused")
            raise MCPError(-32001, "denied")

    app = server(Audit(), Refuse()).http_app()
    await call_tool(app, "boom", {})
    await post_modern(app, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    assert outcomes == [True, -32001]


# Arguments.
async def test_rewritten_arguments_reach_the_tool_and_are_validated_again():
    class Rewrite:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            arguments = dict(request.arguments or {})
            arguments["a"] = arguments["a"] * 10 if request.name == "add" else "not a number"
            request.arguments = arguments
            return await call_next(request)

    mcp = server(Rewrite())

    @mcp.tool
    def double(a: int) -> int:
        return a * 2

    app = mcp.http_app()
    assert (await call_tool(app, "add", {"a": 4, "b": 2}))["structuredContent"] == {"result": 42}
    bad = await call_tool(app, "double", {"a": 1})
    assert bad["isError"] is True
    assert bad["content"][0]["text"].startswith("Invalid arguments for tool 'double': a:")


async def test_prompt_arguments_can_be_rewritten_and_other_methods_have_none():
    problems: list[str] = []

    class Rewrite:
        async def on_get_prompt(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            request.arguments = {"name": request.arguments["name"].upper()}
            return await call_next(request)

        async def on_read_resource(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            assert request.arguments is None
            try:
                request.arguments = {"x": 1}
            except TypeError as exc:
                problems.append(str(exc))
            return await call_next(request)

    app = server(Rewrite()).http_app()
    prompt = await post_modern(app, "prompts/get", {"name": "greet", "arguments": {"name": "ann"}})
    assert prompt["result"]["messages"][0]["content"]["text"] == "Hello, ANN"
    assert "result" in await post_modern(app, "resources/read", {"uri": "data://config"})
    assert problems == ["resources/read has no arguments to replace; only tools/call and prompts/get do"]


# Results.
async def test_a_hook_can_replace_the_result():
    class Replace:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            result = await call_next(request)
            return {"content": [{"type": "text", "text": f"was {result['content'][0]['text']}"}]}

        async def on_list_tools(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            result = await call_next(request)
            return {**result, "tools": [t for t in result["tools"] if t["name"] != "boom"]}

    app = server(Replace()).http_app()
    assert (await call_tool(app, "add", {"a": 1, "b": 2}))["content"] == [{"type": "text", "text": "was 3"}]
    listed = await post_modern(app, "tools/list")
    assert [t["name"] for t in listed["result"]["tools"]] == ["add"]


async def test_a_failing_tool_reaches_middleware_as_an_error_result():
    results: list[dict[str, Any]] = []

    class Keep:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            result = await call_next(request)
            results.append(dict(result))  # the core adds 2026-07-28 fields to it afterwards
            return result

    await call_tool(server(Keep()).http_app(), "boom", {})
    assert results == [
        {"content": [{"type": "text", "text": "Error calling tool 'boom': tool exploded"}], "isError": True}
    ]


# Failures of middleware itself.
async def test_an_exception_in_middleware_is_logged_and_answered_like_one_in_a_tool(caplog):
    class Broken:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            raise KeyError("quota table")

        async def on_list_prompts(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            raise ValueError("no prompts today")

    app = server(Broken()).http_app()
    with caplog.at_level(logging.ERROR, logger="mcp_asgi"):
        result = await call_tool(app, "add", {"a": 1, "b": 2})
        listed = await post_modern(app, "prompts/list")
    assert result["isError"] is True
    assert result["content"] == [{"type": "text", "text": "Error calling tool 'add': 'quota table'"}]
    assert listed["error"] == {"code": -32603, "message": "Error handling prompts/list: no prompts today"}
    logged = [r for r in caplog.records if r.message.startswith("MCP middleware")]
    assert [r.exc_info[0] for r in logged] == [KeyError, ValueError]
    assert "Broken.on_call_tool" in logged[0].message

    masked = server(Broken(), mask_error_details=True).http_app()
    assert (await call_tool(masked, "add", {"a": 1, "b": 2}))["content"][0]["text"] == "Error calling tool 'add'"
    assert (await post_modern(masked, "prompts/list"))["error"]["message"] == "Error handling prompts/list"


async def test_a_hook_that_returns_no_dict_is_an_error_not_a_crash(caplog):
    class Forgetful:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> None:
            await call_next(request)  # forgot the return

    with caplog.at_level(logging.ERROR, logger="mcp_asgi"):
        result = await call_tool(server(Forgetful()).http_app(), "add", {"a": 1, "b": 2})
    assert result["isError"] is True
    assert "Forgetful.on_call_tool returned NoneType" in result["content"][0]["text"]
    assert any("Forgetful.on_call_tool returned NoneType" in r.message for r in caplog.records)


async def test_setting_arguments_to_a_non_dict_fails_in_the_hook_that_did_it():
    class Bad:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            request.arguments = ["a", 1]  # type: ignore[assignment]
            return await call_next(request)

    result = await call_tool(server(Bad()).http_app(), "add", {"a": 1, "b": 2})
    assert result["content"][0]["text"] == "Error calling tool 'add': arguments must be a dict or None, not list"


# What a hook can see.
async def test_principal_request_session_and_context_are_visible_on_a_2025_session():
    seen: dict[str, Any] = {}

    class Look:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            seen.update(
                principal=request.principal,
                header=request.request.headers["x-team"] if request.request else None,
                session=request.session_id,
                version=request.protocol_version,
                context=request.context,
                id=request.request_id,
                params=request.params,
            )
            request.state["started"] = True
            return await call_next(request)

    mcp = server(Look())
    with serve(mcp.http_app()) as base:
        auth = {"authorization": "Bearer s3cret", "x-team": "blue"}
        async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as client:
            session_id = await initialize(client)
            response = await client.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add", "arguments": {}}},
                headers={"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"},
            )
    assert response.status_code == 200
    digest = hashlib.sha256(b"bearer s3cret").hexdigest()
    assert seen["principal"] == f"authorization:{digest}"
    assert seen["header"] == "blue"
    assert seen["session"] == session_id
    assert seen["version"] == "2025-11-25"
    assert isinstance(seen["context"], Context) and seen["context"].session_id == session_id
    assert seen["id"] == 7 and seen["params"] == {"name": "add", "arguments": {}}


# Which object goes where.
def test_asgi_middleware_given_as_mcp_middleware_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"ASGI middleware: pass it to `http_app\(middleware=\[...\]\)`"):
        MCPServer("x", middleware=[Middleware(CORSMiddleware, allow_origins=["*"])])
    with pytest.raises(TypeError, match="ASGI middleware"):
        MCPServer("x").add_middleware(Middleware(CORSMiddleware))


def test_mcp_middleware_given_to_http_app_is_a_clear_type_error():
    class Audit:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            return await call_next(request)

    with pytest.raises(TypeError, match=r"goes to MCPServer\(middleware=\[...\]\) or mcp.add_middleware\(\)"):
        MCPServer("x").http_app(middleware=[Audit()])


def test_objects_that_are_not_middleware_are_refused_with_the_reason():
    class Audit:
        async def on_call_tool(self, request: Any, call_next: Any) -> Any:
            return await call_next(request)

    class Sync:
        def on_request(self, request: Any, call_next: Any) -> Any:
            return call_next(request)

    class FromElsewhere:
        async def on_message(self, context: Any, call_next: Any) -> Any:
            return await call_next(context)

    mcp = MCPServer("x", telemetry=False)
    with pytest.raises(TypeError, match=r"pass an instance of Audit, not the class: Audit\(\)"):
        mcp.add_middleware(Audit)
    with pytest.raises(TypeError, match="Sync.on_request must be an async method"):
        mcp.add_middleware(Sync())
    with pytest.raises(TypeError, match="defines on_message, which MCP middleware never calls"):
        mcp.add_middleware(FromElsewhere())
    with pytest.raises(TypeError, match="object is not MCP middleware: it has none of the async methods on_request"):
        mcp.add_middleware(object())
    assert mcp.middleware == ()


async def test_middleware_added_while_serving_takes_effect_on_the_next_request():
    mcp = server()
    app = mcp.http_app()
    assert (await call_tool(app, "add", {"a": 1, "b": 1}))["structuredContent"] == {"result": 2}

    class Deny:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            raise ToolError("closed")

    mcp.add_middleware(Deny())
    assert (await call_tool(app, "add", {"a": 1, "b": 1}))["content"][0]["text"] == "closed"


async def test_a_tool_asking_for_input_passes_through_middleware_on_2026():
    from mcp_asgi import Elicit

    passed: list[str] = []

    class Watch:
        async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
            try:
                return await call_next(request)
            except Exception as exc:
                passed.append(type(exc).__name__)
                raise

    mcp = server(Watch())

    @mcp.tool
    async def confirm(ctx: Context) -> str:
        answer = await ctx.ask(Elicit("Sure?", {"type": "object", "properties": {}}), key="sure")
        return answer.action

    meta = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    reply = await post_modern(mcp.http_app(), "tools/call", {"name": "confirm", "arguments": {}, "_meta": meta})
    assert reply["result"]["resultType"] == "input_required"
    assert list(reply["result"]["inputRequests"]) == ["sure"]
    assert passed == ["InputRequired"]


# Every transport: the same middleware over both HTTP generations, legacy SSE and stdio.
class Stamp:
    async def on_call_tool(self, request: MCPRequest, call_next: Any) -> dict[str, Any]:
        if request.name == "boom":
            raise MCPError(-32001, "forbidden by middleware")
        request.arguments = {**(request.arguments or {}), "a": 100}
        result = await call_next(request)
        seen = f"request={request.request is not None} session={request.session_id is not None}"
        return {**result, "content": [*result["content"], {"type": "text", "text": seen}]}


async def check_client(client: Client, *, request: bool, session: bool) -> None:
    result = await client.call_tool("add", {"a": 1, "b": 2})
    assert [block.text for block in result.content] == ["102", f"request={request} session={session}"]
    with pytest.raises(Exception, match="forbidden by middleware"):
        await client.call_tool("boom", {})


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_middleware_runs_over_streamable_http(mode):
    with serve(server(Stamp()).http_app()) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            await check_client(client, request=True, session=mode == "legacy")


async def test_middleware_runs_over_legacy_sse():
    with serve(server(Stamp()).http_app(transport="sse")) as base:
        async with Client(sse_client(f"{base}/sse"), mode="legacy") as client:
            await check_client(client, request=True, session=True)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_middleware_and_telemetry_run_over_stdio(mode, tmp_path):
    spans = tmp_path / "spans.jsonl"
    params = StdioServerParameters(
        command=sys.executable, args=[str(FIXTURES / "middleware_server.py"), str(spans)], cwd=str(ROOT)
    )
    async with Client(params, mode=mode) as client:
        result = await client.call_tool("add", {"a": 1, "b": 2})
        # A 2025 conversation over stdio is one session, named "stdio".
        session = "stdio" if mode == "legacy" else None
        assert [block.text for block in result.content] == ["102", f"request=False principal=None session={session}"]
        with pytest.raises(Exception, match="forbidden by middleware"):
            await client.call_tool("forbidden", {})
    recorded = [json.loads(line) for line in spans.read_text().splitlines()]
    calls = [span for span in recorded if span["attributes"]["mcp.method.name"] == "tools/call"]
    assert [(span["name"], span["kind"], span["status"]) for span in calls] == [
        ("tools/call add", "SERVER", "UNSET"),
        ("tools/call forbidden", "SERVER", "ERROR"),
    ]
    assert calls[0]["attributes"]["network.transport"] == "pipe"
    assert calls[1]["attributes"]["error.type"] == "-32001"
