"""ctx.elicit / ctx.sample / ctx.list_roots: one API, served as MRTR on 2026-07-28 and as
server-to-client requests on 2025 sessions, against the official client on a real uvicorn."""

from __future__ import annotations

import mcp_types as types
import pydantic
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from mcp_asgi import Context, MCPServer
from mcp_asgi.protocol.mrtr import Elicit, ListRoots, Sample
from tests.conftest import serve
from tests.http_helpers import client_for, modern_request

MODES = ["legacy", "2026-07-28"]


class Person(pydantic.BaseModel):
    name: str


def build(**options) -> MCPServer:
    mcp = MCPServer("asker", **options)

    @mcp.tool
    async def greet(ctx: Context) -> str:
        """Ask the user's name, then greet them."""
        answer = await ctx.elicit("What is your name?", Person, key="user_name")
        return f"Hello, {answer.data.name}!" if answer.accepted else "No name given."

    @mcp.tool
    async def capital(ctx: Context) -> str:
        """Ask the client's model a question."""
        result = await ctx.sample("What is the capital of France?", max_tokens=50)
        return f"model says: {result.text}"

    @mcp.tool
    async def roots(ctx: Context) -> list[str]:
        """The client's roots."""
        return [root["uri"] for root in await ctx.list_roots()]

    @mcp.tool
    async def two_steps(ctx: Context) -> str:
        """Two rounds of questions."""
        first = await ctx.elicit("Name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        second = await ctx.elicit("Colour?", {"type": "object", "properties": {"colour": {"type": "string"}}})
        return f"{first.content['name']} likes {second.content['colour']}"

    @mcp.tool
    async def everything_at_once(ctx: Context) -> str:
        """Three questions in one round."""
        got = await ctx.ask_all(
            {"who": Elicit("Name?", Person), "llm": Sample("Say hi", max_tokens=5), "where": ListRoots()}
        )
        return f"{got['who'].data.name}/{got['llm'].text}/{len(got['where'])}"

    @mcp.prompt
    async def personal(ctx: Context) -> str:
        """A prompt that needs the user's name."""
        answer = await ctx.elicit("Your name?", Person)
        return f"Write a poem for {answer.data.name}"

    return mcp


async def on_elicit(context, params: types.ElicitRequestParams):
    if "Colour" in params.message:
        return types.ElicitResult(action="accept", content={"colour": "blue"})
    return types.ElicitResult(action="accept", content={"name": "Alice"})


async def on_sample(context, params: types.CreateMessageRequestParams):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="Paris"),
        model="test-model",
        stop_reason="endTurn",
    )


async def on_roots(context):
    return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])


@pytest.fixture(scope="module")
def url():
    with serve(build().http_app()) as base:
        yield f"{base}/mcp"


def client(url: str, mode: str) -> Client:
    return Client(
        url,
        mode=mode,
        elicitation_callback=on_elicit,
        sampling_callback=on_sample,
        list_roots_callback=on_roots,
    )


@pytest.mark.parametrize("mode", MODES)
async def test_elicitation_sampling_and_roots_reach_the_client(url, mode):
    async with client(url, mode) as c:
        assert (await c.call_tool("greet", {})).content[0].text == "Hello, Alice!"
        assert (await c.call_tool("capital", {})).content[0].text == "model says: Paris"
        assert (await c.call_tool("roots", {})).structured_content == {"result": ["file:///work"]}


@pytest.mark.parametrize("mode", MODES)
async def test_several_rounds_and_several_inputs(url, mode):
    async with client(url, mode) as c:
        assert (await c.call_tool("two_steps", {})).content[0].text == "Alice likes blue"
        assert (await c.call_tool("everything_at_once", {})).content[0].text == "Alice/Paris/1"


@pytest.mark.parametrize("mode", MODES)
async def test_prompts_can_ask_too(url, mode):
    async with client(url, mode) as c:
        prompt = await c.get_prompt("personal", {})
        assert prompt.messages[0].content.text == "Write a poem for Alice"


@pytest.mark.parametrize("mode", MODES)
async def test_undeclared_capability_is_32021(url, mode):
    async with Client(url, mode=mode) as c:  # declares no elicitation, sampling or roots
        with pytest.raises(MCPError) as raised:
            await c.call_tool("capital", {})
    assert raised.value.error.code == -32021
    assert raised.value.error.data == {"requiredCapabilities": {"sampling": {}}}


async def test_mrtr_wire_format_and_state_integrity():
    async with client_for(build().http_app()) as http:
        caps = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}

        async def call(params):
            body, headers = modern_request(
                "tools/call", {"name": "two_steps", "arguments": {}, **params, "_meta": caps}
            )
            return await http.post("/mcp", json=body, headers=headers)

        first = (await call({})).json()["result"]
        assert first["resultType"] == "input_required"
        (key1,) = first["inputRequests"]
        assert first["inputRequests"][key1]["method"] == "elicitation/create"
        assert "ttlMs" not in first
        answer1 = {"action": "accept", "content": {"name": "Bob"}}
        second = (await call({"inputResponses": {key1: answer1}, "requestState": first["requestState"]})).json()[
            "result"
        ]
        assert second["resultType"] == "input_required"
        assert second["requestState"] != first["requestState"]
        (key2,) = second["inputRequests"]
        answer2 = {"action": "accept", "content": {"colour": "red"}}
        done = (await call({"inputResponses": {key2: answer2}, "requestState": second["requestState"]})).json()
        assert done["result"]["content"][0]["text"] == "Bob likes red"

        tampered = await call({"inputResponses": {key2: answer2}, "requestState": second["requestState"] + "x"})
        assert tampered.json()["error"]["code"] == -32602

        # A state issued for one call cannot be replayed on another tool.
        body, headers = modern_request(
            "tools/call",
            {"name": "greet", "arguments": {}, "requestState": second["requestState"], "_meta": caps},
        )
        replayed = await http.post("/mcp", json=body, headers=headers)
        assert replayed.json()["error"]["code"] == -32602

        # A malformed answer is asked for again, not accepted.
        again = (await call({"inputResponses": {key1: 12345}})).json()["result"]
        assert again["resultType"] == "input_required"


async def test_missing_capability_is_http_400():
    async with client_for(build().http_app()) as http:
        body, headers = modern_request("tools/call", {"name": "capital", "arguments": {}})
        response = await http.post("/mcp", json=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == -32021
        assert response.json()["error"]["data"] == {"requiredCapabilities": {"sampling": {}}}
        assert response.json()["id"] == 1


async def test_state_secret_lets_another_server_finish_the_call():
    a, b = build(state_secret="shared-secret"), build(state_secret="shared-secret")
    caps = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    body, headers = modern_request("tools/call", {"name": "two_steps", "arguments": {}, "_meta": caps})
    async with client_for(a.http_app()) as one, client_for(b.http_app()) as two:
        first = (await one.post("/mcp", json=body, headers=headers)).json()["result"]
        (key,) = first["inputRequests"]
        body["params"]["inputResponses"] = {key: {"action": "accept", "content": {"name": "Eve"}}}
        body["params"]["requestState"] = first["requestState"]
        second = (await two.post("/mcp", json=body, headers=headers)).json()["result"]
        assert second["resultType"] == "input_required" and "colour" in str(second["inputRequests"])
        # A server with another key refuses the state.
        async with client_for(build(state_secret="other").http_app()) as three:
            refused = (await three.post("/mcp", json=body, headers=headers)).json()
            assert refused["error"]["code"] == -32602
