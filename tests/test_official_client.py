"""The official Python SDK client (mcp==2.3.0) against a real uvicorn, in both protocol generations."""

from __future__ import annotations

import base64

import pytest
from mcp import Client
from mcp_types import PromptReference

from tests.conftest import serve
from tests.servers import PNG, build_server

MODES = ["legacy", "2026-07-28"]


@pytest.fixture(scope="module")
def url():
    with serve(build_server().http_app()) as base:
        yield f"{base}/mcp"


@pytest.mark.parametrize("mode", MODES)
async def test_lists_and_calls_tools(url, mode):
    async with Client(url, mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert list(tools) == ["add", "weather", "which_thread", "fail", "crash", "picture", "slow_steps", "whoami"]
        assert tools["add"].description == "Add two numbers."
        assert tools["add"].input_schema["required"] == ["a", "b"]
        assert tools["weather"].input_schema["properties"]["city"]["description"] == "City name"
        assert tools["weather"].annotations.read_only_hint is True
        assert tools["weather"].output_schema["properties"]["celsius"]["type"] == "number"

        result = await client.call_tool("add", {"a": 2, "b": 40})
        assert result.is_error is False
        assert result.content[0].text == "42"
        assert result.structured_content == {"result": 42}

        weather = await client.call_tool("weather", {"city": "Oslo"})
        assert weather.structured_content == {"city": "Oslo", "celsius": 21.5}


@pytest.mark.parametrize("mode", MODES)
async def test_tool_errors_are_results_a_model_can_read(url, mode):
    async with Client(url, mode=mode) as client:
        bad = await client.call_tool("add", {"a": "two", "b": 1})
        assert bad.is_error is True
        assert "a:" in bad.content[0].text and "integer" in bad.content[0].text

        missing = await client.call_tool("add", {"a": 1})
        assert missing.is_error is True and "b: missing required argument" in missing.content[0].text

        raised = await client.call_tool("fail", {"message": "no such city"})
        assert raised.is_error is True and raised.content[0].text == "no such city"

        crashed = await client.call_tool("crash", {})
        assert crashed.is_error is True and "disk on fire" in crashed.content[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_sync_tools_run_off_the_event_loop(url, mode):
    async with Client(url, mode=mode) as client:
        result = await client.call_tool("which_thread", {})
        # The event loop runs in uvicorn's thread; sync tools run in mcp_asgi.thread_pool's threads.
        assert result.content[0].text == "mcp-asgi worker thread"
        picture = await client.call_tool("picture", {})
        assert picture.content[0].type == "image" and picture.content[0].mime_type == "image/png"


@pytest.mark.parametrize("mode", MODES)
async def test_reads_resources_and_templates(url, mode):
    async with Client(url, mode=mode) as client:
        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert resources["data://config"].mime_type == "application/json"
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["users://{user_id}/profile"]

        config = await client.read_resource("data://config")
        assert config.contents[0].text == '{"debug":true}'
        logo = await client.read_resource("data://logo")
        assert base64.b64decode(logo.contents[0].blob) == PNG
        profile = await client.read_resource("users://7/profile")
        assert profile.contents[0].text == "profile of 7"


@pytest.mark.parametrize("mode", MODES)
async def test_gets_prompts_and_completions(url, mode):
    async with Client(url, mode=mode) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert [a.name for a in prompts["review"].arguments] == ["code", "language"]
        assert [a.required for a in prompts["review"].arguments] == [True, False]

        review = await client.get_prompt("review", {"code": "x = 1"})
        assert review.messages[0].content.text == "Review this python: x = 1"
        chat = await client.get_prompt("chat", {"topic": "rain"})
        assert [m.role for m in chat.messages] == ["user", "assistant"]

        completion = await client.complete(
            PromptReference(type="ref/prompt", name="review"), {"name": "language", "value": "p"}
        )
        assert completion.completion.values == ["python", "pascal", "perl"]


@pytest.mark.parametrize("mode", MODES)
async def test_progress_and_logs_reach_the_client(url, mode):
    progress: list[tuple[float, float | None]] = []
    logs: list[str] = []

    async def on_progress(done, total, message):
        progress.append((done, total))

    async def on_log(params):
        logs.append(params.data)

    options = {"logging_callback": on_log}
    if mode != "legacy":
        options["log_level"] = "info"
    async with Client(url, mode=mode, **options) as client:
        if mode == "legacy":
            await client.set_logging_level("info")
        result = await client.call_tool("slow_steps", {"steps": 3}, progress_callback=on_progress)
    assert result.content[0].text == "3 steps"
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert logs == ["did step 1", "did step 2", "did step 3"]


@pytest.mark.parametrize("mode", MODES)
async def test_no_log_notifications_without_opt_in(url, mode):
    logs: list[str] = []

    async def on_log(params):
        logs.append(params.data)

    async with Client(url, mode=mode, logging_callback=on_log) as client:
        result = await client.call_tool("slow_steps", {"steps": 2})
    assert result.content[0].text == "2 steps"
    assert logs == []


@pytest.mark.parametrize("mode", MODES)
async def test_tools_see_the_starlette_request(url, mode):
    async with Client(url, mode=mode) as client:
        result = await client.call_tool("whoami", {})
    assert result.structured_content == {
        "path": "/mcp",
        "version": "2025-11-25" if mode == "legacy" else "2026-07-28",
        "server": "Demo",
    }


async def test_stateless_and_json_response_modes_serve_the_client():
    app = build_server().http_app(stateless=True, json_response=True)
    with serve(app) as base:
        for mode in MODES:
            async with Client(f"{base}/mcp", mode=mode) as client:
                assert (await client.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"
                assert [tool.name for tool in (await client.list_tools()).tools] == [
                    "add",
                    "weather",
                    "which_thread",
                    "fail",
                    "crash",
                    "picture",
                    "slow_steps",
                    "whoami",
                ]
