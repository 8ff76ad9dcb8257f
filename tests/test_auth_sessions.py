"""With `auth=`, sessions and `requestState` belong to the token's identity; `HostAuth` reuses the host's login.

A refreshed token (same client and subject) keeps its session; another principal holding the
session id gets exactly the unknown-session 404. On a real uvicorn, with the official client
for the legacy HTTP+SSE transport.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import httpx
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection

from mcp_asgi import Context, MCPServer, mount
from mcp_asgi.auth import HostAuth
from tests.bearer_tokens import ALICE, BOB, bearer, protected_server
from tests.conftest import serve
from tests.http_helpers import ACCEPT, modern_request

REFRESHED = bearer("alice-refreshed")
UNKNOWN = "0" * 32


def initialize_body() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }


def whoami(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


async def test_a_2025_session_follows_the_token_identity_not_the_token_string():
    with serve(protected_server().http_app()) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            opened = await http.post(url, json=initialize_body(), headers={"accept": ACCEPT, **ALICE})
            session = opened.headers["mcp-session-id"]

            def headers(who: dict[str, str], session_id: str = session) -> dict[str, str]:
                return {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25", **who}

            notified = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post(url, json=notified, headers=headers(ALICE))).status_code == 202
            refreshed = await http.post(url, json=whoami(1), headers=headers(REFRESHED))
            assert refreshed.status_code == 200, refreshed.text
            assert refreshed.json()["result"]["structuredContent"]["token"] == "alice-refreshed"

            stranger = await http.post(url, json=whoami(2), headers=headers(BOB))
            unknown = await http.post(url, json=whoami(2), headers=headers(BOB, UNKNOWN))
            assert stranger.status_code == unknown.status_code == 404
            assert stranger.content == unknown.content
            # Without a token the answer is the challenge, before any session is looked up.
            assert (await http.post(url, json=whoami(3), headers=headers({}))).status_code == 401
            for method in ("GET", "DELETE"):
                assert (await http.request(method, url, headers=headers(BOB))).status_code == 404, method
            assert (await http.delete(url, headers=headers(REFRESHED))).status_code == 200


async def test_request_state_replayed_with_another_token_is_refused():
    mcp = protected_server()

    @mcp.tool
    async def ask(ctx: Context) -> str:
        answer = await ctx.elicit("Name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        return f"Hello {answer.content['name']}"

    caps = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    with serve(mcp.http_app()) as base:
        async with httpx.AsyncClient(timeout=10) as http:

            async def post(who: dict[str, str], **params: Any) -> dict[str, Any]:
                body, headers = modern_request("tools/call", {"name": "ask", "arguments": {}, **params, "_meta": caps})
                return (await http.post(f"{base}/mcp", json=body, headers={**headers, **who})).json()

            first = (await post(ALICE))["result"]
            (key,) = first["inputRequests"]
            finish = {"inputResponses": {key: {"action": "accept", "content": {"name": "Alice"}}}}
            finish["requestState"] = first["requestState"]
            refused = await post(BOB, **finish)
            assert refused["error"]["code"] == -32602 and "different request" in refused["error"]["message"]
            done = await post(REFRESHED, **finish)
            assert done["result"]["content"][0]["text"] == "Hello Alice"


async def test_legacy_sse_with_a_token_through_the_official_client_and_bound_to_it():
    with serve(protected_server().http_app(transport="sse")) as base:
        url = f"{base}/sse"
        async with Client(sse_client(url, headers={"Authorization": "Bearer alice-token"}), mode="legacy") as client:
            result = await client.call_tool("whoami", {})
            assert result.structured_content["identity"] == "notes-app|alice"
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream("GET", url, headers=ALICE) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                async for line in lines:
                    if line.startswith("data:"):
                        endpoint = line.removeprefix("data:").strip()
                        break
                message = {"jsonrpc": "2.0", "method": "notifications/initialized"}
                stranger = await http.post(f"{base}{endpoint}", json=message, headers=BOB)
                assert stranger.status_code == 404
                assert (await http.post(f"{base}{endpoint}", json=message)).status_code == 401
                assert (await http.post(f"{base}{endpoint}", json=message, headers=REFRESHED)).status_code == 202


class HeaderLogin(AuthenticationBackend):
    """The host's own login: `X-User: name [scope ...]`."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        value = conn.headers.get("x-user")
        if not value:
            return None
        name, *scopes = value.split()
        return AuthCredentials(scopes), SimpleUser(name)


async def test_host_auth_reuses_the_hosts_authentication_middleware():
    mcp = MCPServer("Hosted", auth=HostAuth(required_scopes=["mcp"]))

    @mcp.tool
    def who(ctx: Context) -> dict[str, Any]:
        request = ctx.request
        assert request is not None
        return {"user": request.user.display_name, "scopes": request.auth.scopes, "token": ctx.access_token}

    app = Starlette(middleware=[Middleware(AuthenticationMiddleware, backend=HeaderLogin())])
    mount(app, "/mcp", mcp)
    with serve(app) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            body, headers = modern_request("tools/call", {"name": "who", "arguments": {}})
            anonymous = await http.post(url, json=body, headers=headers)
            metadata = f"{base}/.well-known/oauth-protected-resource/mcp"
            assert anonymous.status_code == 401
            assert anonymous.headers["www-authenticate"] == f'Bearer scope="mcp", resource_metadata="{metadata}"'
            assert (await http.get(metadata)).json() == {
                "resource": url,
                "bearer_methods_supported": ["header"],
            }
            lacking = await http.post(url, json=body, headers={**headers, "x-user": "ann other"})
            assert lacking.status_code == 403
            assert lacking.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
            allowed = await http.post(url, json=body, headers={**headers, "x-user": "ann mcp"})
            assert allowed.status_code == 200, allowed.text
            assert allowed.json()["result"]["structuredContent"] == {"user": "ann", "scopes": ["mcp"], "token": None}


async def test_stdio_is_not_affected_by_auth(tmp_path):
    """The same protected server over stdio answers without any token (the spec leaves stdio to the environment)."""
    script = tmp_path / "server.py"
    script.write_text(
        "from tests.bearer_tokens import protected_server\nprotected_server().run('stdio')\n", encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    params = StdioServerParameters(command=sys.executable, args=[str(script)], env=env)
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("record", {"text": "over stdio"})
    assert result.content[0].text == "recorded"
