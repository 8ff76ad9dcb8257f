"""Every tool, resource, template, prompt and completion the MCP conformance suite exercises.

    mcp-asgi run examples/everything/server.py --transport http --port 3001

Written only with mcp-asgi's public API; the names are fixed by the suite
(`@modelcontextprotocol/conformance`). One endpoint serves both protocol
generations: 2025 sessions and stateless 2026-07-28 requests.
"""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from typing import Annotated

from mcp_asgi import (
    Audio,
    Context,
    Elicit,
    Image,
    ListRoots,
    MCPError,
    MCPServer,
    ParamHeader,
    PromptMessage,
    Sample,
    ToolError,
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
)


def _silence_wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)
    return buffer.getvalue()


WAV = _silence_wav()

mcp = MCPServer(
    "mcp-asgi-everything",
    version="1.0.0",
    instructions="A server exposing every feature the MCP conformance suite checks.",
)


# Content tools (both generations). test_simple_text comes first: some scenarios call the first tool.
@mcp.tool
def test_simple_text() -> str:
    """Returns a simple text response."""
    return "This is a simple text response for testing."


@mcp.tool
def test_image_content() -> Image:
    """Returns an image."""
    return Image(data=PNG, mime_type="image/png")


@mcp.tool
def test_audio_content() -> Audio:
    """Returns audio."""
    return Audio(data=WAV, mime_type="audio/wav")


@mcp.tool
def test_embedded_resource():
    """Returns an embedded resource."""
    return {
        "type": "resource",
        "resource": {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        },
    }


@mcp.tool
def test_multiple_content_types():
    """Returns text, an image and an embedded resource."""
    return [
        "Multiple content types test:",
        Image(data=PNG, mime_type="image/png"),
        {
            "type": "resource",
            "resource": {
                "uri": "test://mixed-content-resource",
                "mimeType": "application/json",
                "text": '{"test":"data","value":123}',
            },
        },
    ]


@mcp.tool
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends log messages while it runs."""
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Logging test completed"


@mcp.tool
def test_error_handling() -> str:
    """Always fails, as a tool error the model can read."""
    raise ToolError("This tool intentionally returns an error for testing")


@mcp.tool
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress three times."""
    for done in (0, 50, 100):
        await ctx.report_progress(done, 100)
        if done < 100:
            await asyncio.sleep(0.05)
    return "Progress test completed"


# Client requests (2025 sessions: real requests on the call's stream).
@mcp.tool
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's model."""
    result = await ctx.sample(prompt, max_tokens=100)
    return f"LLM response: {result.text}"


@mcp.tool
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user for a username and an email."""
    schema = {
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "Your username"},
            "email": {"type": "string", "description": "Your email address"},
        },
        "required": ["username", "email"],
    }
    answer = await ctx.elicit(message, schema)
    return f"User response: action={answer.action}, content={answer.content}"


@mcp.tool
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Asks with default values of every primitive type (SEP-1034)."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": {"type": "boolean", "description": "Verification status", "default": True},
        },
    }
    answer = await ctx.elicit("Please review and update the form fields with defaults", schema)
    return f"Elicitation completed: action={answer.action}, content={answer.content}"


@mcp.tool
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Asks with every enum shape (SEP-1330)."""
    schema = {
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {
                "type": "string",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"},
                ],
            },
            "legacyEnum": {
                "type": "string",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"const": "value1", "title": "First Choice"},
                        {"const": "value2", "title": "Second Choice"},
                        {"const": "value3", "title": "Third Choice"},
                    ]
                },
            },
        },
    }
    answer = await ctx.elicit("Please select options from the enum fields", schema)
    return f"Elicitation completed: action={answer.action}, content={answer.content}"


@mcp.tool
async def test_reconnection(ctx: Context) -> str:
    """Closes its own stream mid-call (2025-11-25 SSE polling); the client resumes for the result."""
    await asyncio.sleep(0.05)
    await ctx.close_sse_stream()
    await asyncio.sleep(0.1)
    return "Reconnection test completed"


JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@mcp.tool(description="Tool with JSON Schema 2020-12 features", input_schema=JSON_SCHEMA_2020_12)
def json_schema_2020_12_tool(**arguments: object) -> str:
    return f"Received: {sorted(arguments)}"


@mcp.tool
def test_custom_header(region: Annotated[str, ParamHeader("Region")]) -> str:
    """Mirrors its `region` argument into the Mcp-Param-Region header (SEP-2243)."""
    return f"Region: {region}"


# 2026-07-28 diagnostics.
@mcp.tool
async def test_missing_capability(ctx: Context) -> str:
    """Needs sampling; a client that did not declare it gets -32021."""
    result = await ctx.sample("Say hello", max_tokens=10)
    return f"LLM response: {result.text}"


@mcp.tool
async def test_streaming_elicitation(ctx: Context) -> str:
    """Asks for input the 2026 way: in the result, never as a request on the stream."""
    answer = await ctx.elicit("Do you want to continue?", {"type": "object", "properties": {"ok": {"type": "boolean"}}})
    return f"action={answer.action}"


@mcp.tool
async def test_logging_tool(ctx: Context) -> str:
    """Logs; the client sees it only if it asked for a log level."""
    await ctx.info("Logging tool ran")
    return "Logging tool completed"


_toggles = {"tool": False, "prompt": False}


def _dynamic_tool() -> str:
    return "I come and go"


def _dynamic_prompt() -> str:
    return "A prompt that comes and goes"


@mcp.tool
def test_trigger_tool_change() -> str:
    """Adds or removes a tool, so listeners get notifications/tools/list_changed."""
    if _toggles["tool"]:
        mcp.remove_tool("test_dynamic_tool")
    else:
        mcp.tool(name="test_dynamic_tool", description="A tool added at run time")(_dynamic_tool)
    _toggles["tool"] = not _toggles["tool"]
    return "Tool list changed"


@mcp.tool
def test_trigger_prompt_change() -> str:
    """Adds or removes a prompt, so listeners get notifications/prompts/list_changed."""
    if _toggles["prompt"]:
        mcp.remove_prompt("test_dynamic_prompt")
    else:
        mcp.prompt(name="test_dynamic_prompt", description="A prompt added at run time")(_dynamic_prompt)
    _toggles["prompt"] = not _toggles["prompt"]
    return "Prompt list changed"


# Multi Round-Trip Requests (2026-07-28).
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
OK_SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@mcp.tool
async def test_input_required_result_elicitation(ctx: Context) -> str:
    """Asks the user's name through an InputRequiredResult."""
    answer = await ctx.elicit("What is your name?", NAME_SCHEMA, key="user_name")
    name = (answer.content or {}).get("name")
    if not answer.accepted or not isinstance(name, str):
        # Not an answer we can use: ask again rather than fail.
        answer = await ctx.elicit("What is your name? (a name, please)", NAME_SCHEMA, key="user_name_again")
        name = (answer.content or {}).get("name", "stranger")
    return f"Hello, {name}!"


@mcp.tool
async def test_input_required_result_sampling(ctx: Context) -> str:
    """Asks the client's model through an InputRequiredResult."""
    result = await ctx.sample("What is the capital of France?", max_tokens=100, key="capital_question")
    return f"The model answered: {result.text}"


@mcp.tool
async def test_input_required_result_list_roots(ctx: Context) -> str:
    """Asks for the client's roots through an InputRequiredResult."""
    roots = await ctx.list_roots(key="client_roots")
    return f"Roots: {', '.join(root.get('uri', '?') for root in roots)}"


@mcp.tool
async def test_input_required_result_request_state(ctx: Context) -> str:
    """Carries its progress in requestState."""
    answer = await ctx.elicit("Confirm to continue", OK_SCHEMA, key="confirm")
    return "state-ok" if answer.accepted else "state-declined"


@mcp.tool
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    """Asks for three things in one round."""
    got = await ctx.ask_all(
        {
            "user_name": Elicit("What is your name?", NAME_SCHEMA),
            "greeting": Sample("Write a one-line greeting", max_tokens=50),
            "client_roots": ListRoots(),
        }
    )
    return f"name={got['user_name'].content}, greeting={got['greeting'].text}, roots={len(got['client_roots'])}"


@mcp.tool
async def test_input_required_result_multi_round(ctx: Context) -> str:
    """Asks twice, in two rounds."""
    first = await ctx.elicit("What is your name?", NAME_SCHEMA, key="step1")
    color_schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    second = await ctx.elicit("What is your favourite colour?", color_schema, key="step2")
    return f"{(first.content or {}).get('name')} likes {(second.content or {}).get('color')}"


@mcp.tool
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    """Relies on a signed requestState; a tampered one is refused."""
    answer = await ctx.elicit("Confirm to continue", OK_SCHEMA, key="confirm")
    return f"confirmed={answer.accepted}"


@mcp.tool
async def test_input_required_result_capabilities(ctx: Context) -> str:
    """Asks only for what the client declared it can do."""
    wanted = {}
    if "sampling" in ctx.client_capabilities:
        wanted["capital_question"] = Sample("What is the capital of France?", max_tokens=50)
    if "elicitation" in ctx.client_capabilities:
        wanted["user_name"] = Elicit("What is your name?", NAME_SCHEMA)
    if "roots" in ctx.client_capabilities:
        wanted["client_roots"] = ListRoots()
    if not wanted:
        return "The client declared no capability to ask through"
    got = await ctx.ask_all(wanted)
    return f"answered: {', '.join(sorted(got))}"


# The tasks extension (io.modelcontextprotocol/tasks, 2026-07-28): the tasks-* scenarios' fixtures.
@mcp.tool
def greet(name: str) -> str:
    """Greets; never a task."""
    return f"Hello, {name}!"


@mcp.tool(task=True)
async def slow_compute(seconds: float, label: str = "") -> str:
    """Sleeps `seconds`, then answers; a task for clients that declared the extension."""
    await asyncio.sleep(seconds)
    return f"{label or 'compute'} finished after {seconds:g}s"


@mcp.tool(task="required")
async def failing_job() -> str:
    """Fails with a tool error after a moment; only runs as a task."""
    await asyncio.sleep(0.5)
    raise ToolError("failing_job failed, as it always does")


@mcp.tool(task=True)
async def protocol_error_job() -> str:
    """Fails with a JSON-RPC error: the task ends `failed`."""
    raise MCPError(-32603, "protocol_error_job hit an internal failure")


CONFIRM_SCHEMA = {"type": "object", "properties": {"confirm": {"type": "boolean"}}, "required": ["confirm"]}


@mcp.tool(task=True)
async def confirm_delete(filename: str, ctx: Context) -> str:
    """Asks the user to confirm, through the task's input requests, then answers."""
    answer = await ctx.elicit(f"Delete {filename}?", CONFIRM_SCHEMA)
    confirmed = answer.accepted and (answer.content or {}).get("confirm") is True
    return f"Deleted {filename}" if confirmed else f"Kept {filename}"


@mcp.tool(task=True)
async def multi_input(ctx: Context) -> str:
    """Asks two questions at once: the task waits until both are answered."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "confirm": {"type": "boolean"}}}
    got = await ctx.ask_all({"first": Elicit("First answer?", schema), "second": Elicit("Second answer?", schema)})
    return f"first={got['first'].content}, second={got['second'].content}"


@mcp.tool(task="required", task_start="manual")
async def test_tool_with_task(ctx: Context) -> str:
    """Asks the user's name in the request (MRTR), then finishes as a task."""
    answer = await ctx.elicit("What is your name?", NAME_SCHEMA, key="user_name")
    ctx.run_as_task()
    return f"Hello, {(answer.content or {}).get('name', 'stranger')}!"


# Resources.
@mcp.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource."""
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (a PNG)."""
    return PNG


@mcp.resource("test://template/{id}/data", name="template-data", mime_type="application/json")
def template_data(id: str) -> dict:
    """Data for an id."""
    return {"id": id, "templateTest": True, "data": f"Data for ID: {id}"}


@mcp.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource clients can subscribe to."""
    return "Watched resource content"


# Prompts.
@mcp.prompt
def test_simple_prompt() -> str:
    """A prompt without arguments."""
    return "This is a simple prompt for testing."


@mcp.prompt
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two required arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@mcp.prompt
def test_prompt_with_embedded_resource(resourceUri: str) -> list:
    """A prompt that embeds a resource."""
    resource = {
        "type": "resource",
        "resource": {"uri": resourceUri, "mimeType": "text/plain", "text": "Embedded resource content for testing."},
    }
    return [PromptMessage(resource), PromptMessage("Please process the embedded resource above.")]


@mcp.prompt
def test_prompt_with_image() -> list:
    """A prompt that includes an image."""
    return [PromptMessage(Image(data=PNG, mime_type="image/png")), PromptMessage("Please analyze the image above.")]


@mcp.prompt
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that needs context from the user first (2026-07-28)."""
    schema = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
    answer = await ctx.elicit("What context should the prompt use?", schema, key="user_context")
    return f"Use this context: {(answer.content or {}).get('context')}"


@mcp.completion
def complete(ref: dict, argument: dict) -> list[str]:
    values = {"arg1": ["test1", "test2", "testing"], "arg2": ["value1", "value2"]}.get(argument.get("name"), [])
    return [value for value in values if value.startswith(argument.get("value", ""))]


if __name__ == "__main__":
    mcp.run(transport="http", port=3001)
