"""Scopes per tool, resource and prompt, on a real uvicorn: 403 `insufficient_scope` or the call runs.

The host grants scopes through Starlette's `AuthenticationMiddleware` (see
tests/scoped_servers.py); every case runs in both generations, 2026-07-28 and a
2025-11-25 session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import serve
from tests.http_helpers import MODERN, sse_messages
from tests.scoped_servers import INSUFFICIENT_SCOPE, METADATA_URL, Endpoint, auth_host, build_server

VERSIONS = [MODERN, "2025-11-25"]

RAN: list[str] = []


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with auth_host(RAN) as found:
        yield found


@pytest.fixture(scope="module")
def bare_base() -> Iterator[str]:
    """The same server with no authentication anywhere."""
    with serve(build_server(RAN).http_app()) as found:
        yield found


@pytest.fixture(params=VERSIONS)
async def mcp(request: pytest.FixtureRequest, base: str) -> AsyncIterator[Endpoint]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield await Endpoint(http, f"{base}/mcp", request.param).open()


def assert_refused(
    response: httpx.Response, missing: str, required: list[str], *, challenge: str | None = None
) -> dict[str, Any]:
    """A 403 with the insufficient_scope challenge and JSON-RPC error naming the missing scopes."""
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == INSUFFICIENT_SCOPE
    assert error["data"] == {"requiredScopes": required}
    assert f"requires scope(s) {missing}," in error["message"]
    expected = challenge or f'Bearer error="insufficient_scope", scope="{" ".join(required)}"'
    assert response.headers["www-authenticate"] == expected
    return error


async def test_tool_without_its_scope_is_refused_with_403_and_does_not_run(mcp):
    response = await mcp.request("tools/call", {"name": "write_note", "arguments": {"text": "t-no-scope"}}, "other")
    error = assert_refused(response, "notes:write", ["notes:write"])
    assert error["message"] == (
        "Insufficient scope: tool 'write_note' requires scope(s) notes:write, which the access token "
        "does not grant; obtain a token with them and retry"
    )
    assert "t-no-scope" not in RAN


async def test_tool_with_its_scope_runs(mcp):
    response = await mcp.request(
        "tools/call", {"name": "write_note", "arguments": {"text": "t-granted"}}, "notes:read notes:write"
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"]["content"][0]["text"] == "saved"
    assert "t-granted" in RAN


async def test_refusal_carries_the_auth_layers_challenge_when_it_set_one(mcp):
    response = await mcp.request(
        "tools/call", {"name": "write_note", "arguments": {"text": "t-challenge"}}, "", challenge=True
    )
    expected = f'Bearer error="insufficient_scope", scope="notes:write", resource_metadata="{METADATA_URL}"'
    assert_refused(response, "notes:write", ["notes:write"], challenge=expected)
    assert "t-challenge" not in RAN


async def test_refusal_names_the_missing_scopes_and_challenges_for_all_required(mcp):
    response = await mcp.request("tools/call", {"name": "move_note", "arguments": {"text": "t-half"}}, "notes:write")
    # The message says what is missing; the challenge asks for everything the call needs (spec: one round).
    assert_refused(response, "notes:read", ["notes:read", "notes:write"])
    assert "t-half" not in RAN


async def test_public_tool_needs_no_scope(mcp):
    response = await mcp.request("tools/call", {"name": "echo", "arguments": {"text": "t-public"}}, "")
    assert response.status_code == 200, response.text
    assert "t-public" in RAN


@pytest.mark.parametrize("uri", ["notes://secret", "notes://by-id/42"])
async def test_scoped_resource_and_template_are_refused_then_read_with_the_scope(mcp, uri):
    before = len(RAN)
    refused = await mcp.request("resources/read", {"uri": uri}, "notes:write")
    error = assert_refused(refused, "notes:read", ["notes:read"])
    assert f"resource '{uri}'" in error["message"]
    assert len(RAN) == before
    granted = await mcp.request("resources/read", {"uri": uri}, "notes:read")
    assert granted.status_code == 200, granted.text
    assert granted.json()["result"]["contents"][0]["uri"] == uri


async def test_public_resources_need_no_scope(mcp):
    for uri in ("notes://public", "notes://tags/x"):
        response = await mcp.request("resources/read", {"uri": uri}, None if mcp.version == MODERN else "")
        assert response.status_code == 200, response.text


async def test_scoped_prompt_is_refused_then_got_with_the_scope(mcp):
    refused = await mcp.request("prompts/get", {"name": "summarize", "arguments": {"topic": "p-none"}}, "")
    assert "prompt 'summarize'" in assert_refused(refused, "notes:read", ["notes:read"])["message"]
    assert "summarize p-none" not in RAN
    granted = await mcp.request("prompts/get", {"name": "summarize", "arguments": {"topic": "p-ok"}}, "notes:read")
    assert granted.status_code == 200, granted.text
    assert granted.json()["result"]["messages"][0]["content"]["text"] == "Summarize the notes about p-ok"
    public = await mcp.request("prompts/get", {"name": "hello"}, "")
    assert public.status_code == 200, public.text


@pytest.mark.parametrize(
    "ref",
    [{"type": "ref/prompt", "name": "summarize"}, {"type": "ref/resource", "uri": "notes://by-id/{note_id}"}],
)
async def test_completing_a_scoped_prompt_or_template_needs_its_scopes(mcp, ref):
    argument = {"name": f"arg-{ref['type']}-{mcp.version}", "value": "a"}
    refused = await mcp.request("completion/complete", {"ref": ref, "argument": argument}, "")
    assert "completion of" in assert_refused(refused, "notes:read", ["notes:read"])["message"]
    assert f"complete {argument['name']}" not in RAN
    granted = await mcp.request("completion/complete", {"ref": ref, "argument": argument}, "notes:read")
    assert granted.status_code == 200, granted.text
    assert granted.json()["result"]["completion"]["values"] == ["alpha", "beta"]


async def test_completing_a_public_prompt_needs_no_scope(mcp):
    ref = {"type": "ref/prompt", "name": "hello"}
    response = await mcp.request("completion/complete", {"ref": ref, "argument": {"name": "x", "value": ""}}, "")
    assert response.status_code == 200, response.text


async def test_refusal_after_the_reply_turned_sse_is_an_error_event(mcp):
    # The tool streams progress (status 200 is sent), then reads a scoped resource: the 403
    # can only be the JSON-RPC error, as the last event of the stream.
    params = {"name": "read_secret_later", "arguments": {}, "_meta": {"progressToken": "p1"}}
    response = await mcp.request("tools/call", params, "notes:write")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "www-authenticate" not in response.headers
    messages = sse_messages(response.text)
    assert messages[0]["method"] == "notifications/progress"
    assert messages[-1]["error"]["code"] == INSUFFICIENT_SCOPE
    assert messages[-1]["error"]["data"] == {"requiredScopes": ["notes:read"]}
    granted = await mcp.request("tools/call", params, "notes:read")
    assert sse_messages(granted.text)[-1]["result"]["content"][0]["text"] == "the secret note"


@pytest.mark.parametrize("version", VERSIONS)
async def test_without_any_authentication_a_scoped_tool_is_refused_and_says_auth_is_needed(bare_base, version):
    async with httpx.AsyncClient(timeout=10) as http:
        bare = await Endpoint(http, f"{bare_base}/mcp", version).open(None)
        response = await bare.request("tools/call", {"name": "write_note", "arguments": {"text": "t-bare"}}, None)
        error = assert_refused(response, "notes:write", ["notes:write"])
        assert "the request is not authenticated; authentication is needed" in error["message"]
        assert "t-bare" not in RAN
        public = await bare.request("tools/call", {"name": "echo", "arguments": {"text": "t-bare-public"}}, None)
        assert public.status_code == 200, public.text


async def test_anonymous_request_through_the_hosts_auth_is_told_auth_is_needed(base):
    async with httpx.AsyncClient(timeout=10) as http:
        modern = Endpoint(http, f"{base}/mcp", MODERN)
        response = await modern.request("tools/call", {"name": "write_note", "arguments": {"text": "t-anon"}}, None)
        assert "not authenticated" in assert_refused(response, "notes:write", ["notes:write"])["message"]
        assert "t-anon" not in RAN
