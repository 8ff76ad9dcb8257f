"""Servers and hosts for the per-component scope tests: scopes granted by a test header.

The host is a Starlette app with Starlette's own `AuthenticationMiddleware`: it sets
`scope["auth"]` (an `AuthCredentials`), the same key `BearerAuth`/`HostAuth` set, so
these tests pin the contract either kind of authentication relies on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi import Context, MCPServer, mount
from tests.conftest import serve
from tests.http_helpers import ACCEPT, MODERN, modern_request

SCOPES_HEADER = "x-test-scopes"
CHALLENGE_HEADER = "x-test-challenge"
METADATA_URL = "https://notes.example/.well-known/oauth-protected-resource/mcp"
INSUFFICIENT_SCOPE = -32003


class HeaderScopes(AuthenticationBackend):
    """`X-Test-Scopes: a b` authenticates user "tester" granted scopes a and b; no header is anonymous."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        raw = conn.headers.get(SCOPES_HEADER)
        if raw is None:
            return None
        return AuthCredentials(raw.split()), SimpleUser("tester")


def challenge(error: str, scopes: Sequence[str]) -> str:
    return f'Bearer error="{error}", scope="{" ".join(scopes)}", resource_metadata="{METADATA_URL}"'


class ChallengeMiddleware:
    """Puts a challenge builder in the scope, as `BearerAuth` does, when the request asks for one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(name == CHALLENGE_HEADER.encode() for name, _ in scope["headers"]):
            scope["mcp_asgi.challenge"] = challenge
        await self.app(scope, receive, send)


def build_server(ran: list[str], **options: Any) -> MCPServer:
    """Scoped and public tools, resources, a template, prompts and a completion; `ran` records what ran."""
    mcp = MCPServer("Scoped notes", **options)

    @mcp.tool(scopes=["notes:write"])
    def write_note(text: str) -> str:
        ran.append(text)
        return "saved"

    @mcp.tool(scopes=["notes:read", "notes:write"])
    def move_note(text: str) -> str:
        ran.append(text)
        return "moved"

    @mcp.tool
    def echo(text: str) -> str:
        ran.append(text)
        return text

    @mcp.tool
    async def read_secret_later(ctx: Context) -> str:
        """Streams progress first, then reads a scoped resource with the caller's scopes."""
        await ctx.report_progress(1, 2)
        contents = await ctx.read_resource("notes://secret")
        return contents[0]["text"]

    @mcp.resource("notes://secret", scopes=["notes:read"])
    def secret() -> str:
        ran.append("secret")
        return "the secret note"

    @mcp.resource("notes://public")
    def public() -> str:
        return "a public note"

    @mcp.resource("notes://by-id/{note_id}", scopes=("notes:read",))
    def note(note_id: str) -> str:
        ran.append(f"note {note_id}")
        return f"note {note_id}"

    @mcp.resource("notes://tags/{tag}")
    def tag(tag: str) -> str:
        return tag

    @mcp.prompt(scopes={"notes:read"})
    def summarize(topic: str) -> str:
        ran.append(f"summarize {topic}")
        return f"Summarize the notes about {topic}"

    @mcp.prompt
    def hello() -> str:
        return "Hello"

    @mcp.completion
    def complete(ref: dict[str, Any], argument: dict[str, Any]) -> list[str]:
        ran.append(f"complete {argument.get('name')}")
        return ["alpha", "beta"]

    return mcp


@contextlib.contextmanager
def auth_host(ran: list[str]) -> Iterator[str]:
    """A host with AuthenticationMiddleware: `/mcp` lists every component, `/hidden/mcp` hides (2 per page)."""
    app = Starlette(
        middleware=[Middleware(AuthenticationMiddleware, backend=HeaderScopes()), Middleware(ChallengeMiddleware)]
    )
    mount(app, "/mcp", build_server(ran))
    mount(app, "/hidden/mcp", build_server(ran, hide_unauthorized=True, page_size=2))
    mount(app, "/legacy", build_server(ran).http_app(transport="sse", path="/sse"))
    with serve(app) as base:
        yield base


class Endpoint:
    """Raw requests to one MCP endpoint in one generation: 2026-07-28, or a 2025 session."""

    def __init__(self, http: httpx.AsyncClient, url: str, version: str) -> None:
        self.http, self.url, self.version = http, url, version
        self.session_id: str | None = None
        self.next_id = 1

    async def open(self, scopes: str | None = "") -> Endpoint:
        """Start the 2025 session (as user "tester", whatever the scopes of later requests); 2026 has none."""
        if self.version == MODERN:
            return self
        client_info = {"name": "t", "version": "0"}
        params = {"protocolVersion": self.version, "capabilities": {}, "clientInfo": client_info}
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}
        response = await self.http.post(self.url, json=body, headers={"accept": ACCEPT, **_auth(scopes)})
        assert response.status_code == 200, response.text
        self.session_id = response.headers["mcp-session-id"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await self.http.post(self.url, json=initialized, headers=self._headers(scopes))).status_code == 202
        return self

    def _headers(self, scopes: str | None) -> dict[str, str]:
        assert self.session_id is not None
        return {
            "accept": ACCEPT,
            "mcp-session-id": self.session_id,
            "mcp-protocol-version": self.version,
            **_auth(scopes),
        }

    async def request(
        self, method: str, params: dict[str, Any] | None = None, scopes: str | None = "", *, challenge: bool = False
    ) -> httpx.Response:
        """POST one request; `scopes` are granted (None: anonymous), `challenge` puts a challenge builder in."""
        self.next_id += 1
        if self.version == MODERN:
            body, headers = modern_request(method, params, request_id=self.next_id)
            headers.update(_auth(scopes))
        else:
            body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
            headers = self._headers(scopes)
        if challenge:
            headers[CHALLENGE_HEADER] = "1"
        return await self.http.post(self.url, json=body, headers=headers)

    async def list_all(self, method: str, key: str, scopes: str | None = "") -> tuple[list[str], set[str]]:
        """Every page of a list: the names (or URIs) in order, and the cacheScopes the pages carried."""
        names: list[str] = []
        cache_scopes: set[str] = set()
        params: dict[str, Any] = {}
        while True:
            response = await self.request(method, params, scopes)
            assert response.status_code == 200, response.text
            result = response.json()["result"]
            names += [item.get("uri") or item.get("uriTemplate") or item["name"] for item in result[key]]
            if "cacheScope" in result:
                cache_scopes.add(result["cacheScope"])
            if "nextCursor" not in result:
                return names, cache_scopes
            params = {"cursor": result["nextCursor"]}


def _auth(scopes: str | None) -> dict[str, str]:
    return {} if scopes is None else {SCOPES_HEADER: scopes}
