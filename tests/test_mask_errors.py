"""`MCPServer(mask_error_details=True)`: an unexpected exception's text stays in the log, never reaches the client."""

from __future__ import annotations

import logging

import mcp
import pytest
from mcp import Client
from mcp_types import PromptReference

from mcp_asgi import MCPServer, ToolError
from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR
from tests.conftest import serve

SECRET = "db password=hunter2 at /srv/app.py"
MODES = ["legacy", "2026-07-28"]


class LazyRow:
    """Like an ORM row whose connection is gone: turning it into text fails, quoting the DSN."""

    def __str__(self) -> str:
        raise RuntimeError(SECRET)

    __repr__ = __str__


def build(mask: bool) -> MCPServer:
    server = MCPServer("Masking", mask_error_details=mask)

    @server.tool
    def x() -> str:
        raise RuntimeError(SECRET)

    @server.tool
    def refuse() -> str:
        raise ToolError("no such city")

    @server.tool
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool
    def unusable() -> dict:
        return {"row": LazyRow()}

    @server.resource("secret://config")
    def config() -> str:
        raise RuntimeError(SECRET)

    @server.resource("secret://users/{user_id}")
    def user(user_id: str) -> str:
        raise RuntimeError(SECRET)

    @server.prompt
    def greeting() -> str:
        raise RuntimeError(SECRET)

    @server.completion
    def complete(ref, argument) -> list[str]:
        raise RuntimeError(SECRET)

    return server


@pytest.fixture(scope="module")
def urls():
    with serve(build(True).http_app()) as masked, serve(build(False).http_app()) as plain:
        yield {True: f"{masked}/mcp", False: f"{plain}/mcp"}


def traceback_logged(caplog: pytest.LogCaptureFixture) -> str:
    """The formatted traceback of the one error the mcp_asgi logger recorded."""
    records = [r for r in caplog.records if r.name == "mcp_asgi" and r.exc_info]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    return logging.Formatter().format(records[0])


@pytest.mark.parametrize("mode", MODES)
async def test_masked_tool_error_says_only_which_tool(urls, mode, caplog):
    caplog.set_level(logging.ERROR, logger="mcp_asgi")
    async with Client(urls[True], mode=mode) as client:
        result = await client.call_tool("x", {})
    assert result.is_error is True
    assert [block.text for block in result.content] == ["Error calling tool 'x'"]
    logged = traceback_logged(caplog)
    assert "Traceback (most recent call last)" in logged and SECRET in logged


@pytest.mark.parametrize("mode", MODES)
async def test_unmasked_tool_error_carries_the_text(urls, mode):
    async with Client(urls[False], mode=mode) as client:
        result = await client.call_tool("x", {})
    assert result.is_error is True
    assert result.content[0].text == f"Error calling tool 'x': {SECRET}"


@pytest.mark.parametrize("mode", MODES)
async def test_tool_error_and_validation_messages_pass_through_the_mask(urls, mode):
    async with Client(urls[True], mode=mode) as client:
        refused = await client.call_tool("refuse", {})
        assert refused.is_error is True and refused.content[0].text == "no such city"
        invalid = await client.call_tool("add", {"a": "two", "b": 1})
        assert invalid.is_error is True
        assert invalid.content[0].text.startswith("Invalid arguments for tool 'add': a: ")
        assert "'two'" in invalid.content[0].text


async def test_masked_unusable_return_value_hides_the_value(urls):
    async with Client(urls[True], mode="2026-07-28") as client:
        result = await client.call_tool("unusable", {})
    assert result.is_error is True
    assert result.content[0].text == "Error calling tool 'unusable': it returned an unusable value"


CASES = [
    ("resource", "Error reading resource 'secret://config'"),
    ("template", "Error reading resource 'secret://users/7'"),
    ("prompt", "Error rendering prompt 'greeting'"),
    ("completion", "Error completing argument 'name'"),
]


async def other_failure(client: Client, which: str) -> mcp.MCPError:
    with pytest.raises(mcp.MCPError) as caught:
        if which == "resource":
            await client.read_resource("secret://config")
        elif which == "template":
            await client.read_resource("secret://users/7")
        elif which == "prompt":
            await client.get_prompt("greeting")
        else:
            await client.complete(PromptReference(type="ref/prompt", name="greeting"), {"name": "name", "value": ""})
    return caught.value


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("which", "message"), CASES)
async def test_masked_resource_prompt_and_completion_errors(urls, mode, which, message, caplog):
    caplog.set_level(logging.ERROR, logger="mcp_asgi")
    async with Client(urls[True], mode=mode) as client:
        error = await other_failure(client, which)
    assert (error.code, error.message) == (INTERNAL_ERROR, message)
    assert SECRET not in str(error.data)
    logged = traceback_logged(caplog)
    assert "Traceback (most recent call last)" in logged and SECRET in logged


@pytest.mark.parametrize(("which", "message"), CASES)
async def test_unmasked_resource_prompt_and_completion_errors_carry_the_text(urls, which, message):
    async with Client(urls[False], mode="2026-07-28") as client:
        error = await other_failure(client, which)
    assert (error.code, error.message) == (INTERNAL_ERROR, f"{message}: {SECRET}")
