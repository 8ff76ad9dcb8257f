"""Functions become tools, resources and prompts with the right schemas and content."""

from __future__ import annotations

import base64
import dataclasses

import pydantic
import pytest
from typing_extensions import TypedDict

from mcp_asgi import Audio, Context, FileContent, Image, MCPServer, PromptMessage, ToolResult
from mcp_asgi.components.content import to_content
from tests.http_helpers import client_for, modern_request
from tests.servers import PNG


class Point(TypedDict):
    x: int
    y: int


@dataclasses.dataclass
class Box:
    width: float
    height: float


def test_decorator_forms_register_tools():
    mcp = MCPServer("t")

    @mcp.tool
    def bare(x: int) -> int:
        return x

    @mcp.tool()
    def called(x: int) -> int:
        return x

    @mcp.tool(name="renamed", title="Nice name")
    def original(x: int) -> int:
        return x

    assert list(mcp._tools) == ["bare", "called", "renamed"]
    assert mcp._tools["renamed"].definition["title"] == "Nice name"
    assert bare(3) == 3  # the decorator returns the function itself
    with pytest.raises(TypeError, match="name="):
        mcp.tool("oops")


def test_context_and_awkward_names_stay_out_of_the_way():
    mcp = MCPServer("t")

    @mcp.tool
    async def tricky(json: str, schema: int = 3, *, ctx: Context) -> str:
        return json

    schema = mcp._tools["tricky"].input_schema
    assert set(schema["properties"]) == {"json", "schema"}
    assert schema["required"] == ["json"]
    assert schema["properties"]["schema"]["default"] == 3
    assert mcp._tools["tricky"].arguments.validate({"json": "a"}) == {"json": "a", "schema": 3}


@pytest.mark.parametrize(
    ("annotation", "wrapped", "schema_type"),
    [
        (int, True, "integer"),
        (list[int], True, "array"),
        (dict, False, None),
        (Point, False, None),
        (Box, False, None),
    ],
)
def test_typed_returns_declare_an_output_schema(annotation, wrapped, schema_type):
    mcp = MCPServer("t")

    def fn() -> None: ...

    fn.__annotations__["return"] = annotation
    tool = mcp.add_tool(__import__("mcp_asgi.components.tools", fromlist=["Tool"]).Tool(fn))
    schema = tool.output_schema
    assert schema["type"] == "object"
    assert tool.wrap_result is wrapped
    if wrapped:
        assert schema["properties"]["result"]["type"] == schema_type


def test_text_and_media_returns_have_no_output_schema():
    mcp = MCPServer("t")

    @mcp.tool
    def text() -> str:
        return "x"

    @mcp.tool
    def image() -> Image:
        return Image(data=PNG)

    @mcp.tool
    def untyped():
        return {"a": 1}

    assert all("outputSchema" not in tool.definition for tool in mcp._tools.values())


def test_explicit_input_schema_is_served_unchanged():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"Name": {"type": "string"}},
        "properties": {"name": {"$ref": "#/$defs/Name"}},
        "additionalProperties": False,
    }
    mcp = MCPServer("t")

    @mcp.tool(input_schema=schema)
    def hello(name: str) -> str:
        return name

    assert mcp._tools["hello"].definition["inputSchema"] == schema


def test_content_conversion():
    assert to_content("hi") == [{"type": "text", "text": "hi"}]
    assert to_content(None) == []
    png = to_content(PNG)[0]
    assert png["type"] == "image" and png["mimeType"] == "image/png"
    assert base64.b64decode(png["data"]) == PNG
    wav = Audio(data=b"RIFF\x00\x00\x00\x00WAVEfmt ").to_content()
    assert wav["type"] == "audio" and wav["mimeType"] == "audio/wav"
    assert Image(data=b"xx", format="jpeg").to_content()["mimeType"] == "image/jpeg"
    blob = to_content(b"\x00\x01")[0]
    assert blob["type"] == "resource" and blob["resource"]["mimeType"] == "application/octet-stream"
    assert FileContent(data=b"%PDF", name="r.pdf").to_content()["resource"]["mimeType"] == "application/pdf"
    assert [b["type"] for b in to_content(["a", Image(data=PNG)])] == ["text", "image"]
    assert to_content({"type": "text", "text": "raw"}) == [{"type": "text", "text": "raw"}]
    assert to_content([1, 2]) == [{"type": "text", "text": "[1,2]"}]
    assert to_content(Box(1, 2)) == [{"type": "text", "text": '{"width":1,"height":2}'}]
    with pytest.raises(ValueError):
        Image()


def test_template_parameters_must_match_the_function():
    mcp = MCPServer("t")
    with pytest.raises(ValueError, match="does not accept"):

        @mcp.resource("items://{item_id}")
        def wrong(other: str) -> str:
            return other

    with pytest.raises(ValueError, match="does not provide"):

        @mcp.resource("items://{item_id}")
        def needs_more(item_id: str, extra: str) -> str:
            return item_id

    with pytest.raises(TypeError, match="URI"):
        mcp.resource(lambda: "x")


async def test_tool_result_and_structured_values_over_http():
    mcp = MCPServer("t")

    @mcp.tool
    def custom() -> ToolResult:
        return ToolResult(content=["one", "two"], structured_content={"n": 2}, meta={"k": "v"})

    @mcp.tool
    def box() -> Box:
        return Box(width=2, height=3)

    @mcp.resource("files://{path*}")
    def file(path: str) -> str:
        return path

    @mcp.prompt
    def multi(topic: str) -> list:
        return [PromptMessage(f"about {topic}"), PromptMessage("ok", role="assistant")]

    @mcp.prompt
    def bad_role() -> list:
        return [PromptMessage("x", role="system")]

    async with client_for(mcp.http_app()) as http:

        async def call(method, params):
            body, headers = modern_request(method, params)
            return (await http.post("/mcp", json=body, headers=headers)).json()

        result = (await call("tools/call", {"name": "custom"}))["result"]
        assert [c["text"] for c in result["content"]] == ["one", "two"]
        assert result["structuredContent"] == {"n": 2}
        assert result["_meta"]["k"] == "v"

        result = (await call("tools/call", {"name": "box"}))["result"]
        assert result["structuredContent"] == {"width": 2.0, "height": 3.0}

        result = (await call("resources/read", {"uri": "files://a/b/c.txt"}))["result"]
        assert result["contents"][0]["text"] == "a/b/c.txt"

        result = (await call("prompts/get", {"name": "multi", "arguments": {"topic": "tea"}}))["result"]
        assert [m["role"] for m in result["messages"]] == ["user", "assistant"]

        error = (await call("prompts/get", {"name": "bad_role"}))["error"]
        assert error["code"] == -32603 and "role" in error["message"]


def test_pydantic_field_metadata_reaches_the_schema():
    mcp = MCPServer("t")

    class Filters(pydantic.BaseModel):
        tags: list[str] = []

    @mcp.tool
    def search(
        query: str = pydantic.Field(description="What to look for", min_length=1), filters: Filters | None = None
    ) -> list[str]:
        return [query]

    schema = mcp._tools["search"].input_schema
    assert schema["properties"]["query"]["description"] == "What to look for"
    assert "$defs" in schema
