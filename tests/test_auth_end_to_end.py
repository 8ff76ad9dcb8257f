"""BearerAuth with the real verifiers: JWTs checked against a JWKS and tokens introspected, both served over HTTP.

A FastAPI app mounts the server at `/api/v1/mcp`; the official Python client calls it with a JWT
in both protocol generations; every bad token gets its 401 before anything runs. The JWT verifier
has no audience of its own, so `BearerAuth` binds tokens to the endpoint's resource URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from mcp_asgi import Context, MCPServer, mount
from mcp_asgi.auth import BearerAuth, IntrospectionVerifier, JWTVerifier
from tests.auth_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    ISSUER,
    AuthServer,
    jwks,
    mint,
    new_rsa_key,
    public_jwk,
    serve_auth_server,
    unsigned,
)
from tests.conftest import serve
from tests.http_helpers import modern_request

KEY, ROTATED, STRANGER = new_rsa_key(), new_rsa_key(), new_rsa_key()
PATH = "/api/v1/mcp"


def notes_server(auth: BearerAuth, ran: list[str]) -> MCPServer:
    mcp = MCPServer("Notes", auth=auth)

    @mcp.tool
    def whoami(ctx: Context) -> dict[str, Any]:
        """Who the verified token speaks for."""
        ran.append("whoami")
        token = ctx.access_token
        assert token is not None
        return {"subject": token.subject, "client": token.client_id, "scopes": sorted(token.scopes)}

    return mcp


class Deployment:
    def __init__(self, auth_server: AuthServer, base: str, ran: list[str]) -> None:
        self.auth_server, self.base, self.ran = auth_server, base, ran
        self.url = base + PATH

    def token(self, key: Any = KEY, kid: str = "k1", **claims: Any) -> str:
        claims.setdefault("aud", self.url)
        return mint(key, kid=kid, **claims)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    ran: list[str] = []
    with serve_auth_server() as auth_server:
        auth_server.jwks = jwks(public_jwk(KEY, "k1"))
        verifier = JWTVerifier(jwks_uri=auth_server.jwks_uri, issuer=ISSUER)
        app = FastAPI()
        mount(app, PATH, notes_server(BearerAuth(verifier, authorization_servers=[ISSUER]), ran))
        with serve(app) as base:
            yield Deployment(auth_server, base, ran)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_official_client_calls_with_a_jwt(deployment: Deployment, mode: str) -> None:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {deployment.token()}"})
    async with Client(streamable_http_client(deployment.url, http_client=http), mode=mode) as client:
        result = await client.call_tool("whoami", {})
    assert result.is_error is False
    assert result.structured_content == {
        "subject": "alice",
        "client": "client-1",
        "scopes": ["notes:read", "notes:write"],
    }


def call(deployment: Deployment, token: str | None) -> httpx.Response:
    body, headers = modern_request("tools/call", {"name": "whoami", "arguments": {}})
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(deployment.url, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    "bad",
    ["expired", "other resource", "other issuer", "wrong key", "alg none", "malformed", "missing"],
)
def test_each_bad_token_is_refused_before_anything_runs(deployment: Deployment, bad: str) -> None:
    tokens = {
        "expired": lambda: deployment.token(exp_in=-120),
        "other resource": lambda: deployment.token(aud="https://elsewhere.example/mcp"),
        "other issuer": lambda: deployment.token(iss="https://evil.example"),
        "wrong key": lambda: deployment.token(key=STRANGER),
        "alg none": lambda: unsigned(aud=deployment.url),
        "malformed": lambda: "not.a.jwt",
        "missing": lambda: None,
    }
    before = len(deployment.ran)
    refused = call(deployment, tokens[bad]())
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    metadata = f'resource_metadata="{deployment.base}/.well-known/oauth-protected-resource{PATH}"'
    assert challenge.startswith("Bearer ") and metadata in challenge
    # RFC 6750 3.1: a request without a token gets no error code; a refused token gets invalid_token.
    assert ('error="invalid_token"' in challenge) is (bad != "missing")
    assert refused.json()["error"]["code"] == -32001
    assert len(deployment.ran) == before


def test_a_rotated_key_is_accepted_at_once(deployment: Deployment) -> None:
    auth_server = deployment.auth_server
    auth_server.jwks = jwks(public_jwk(KEY, "k1"), public_jwk(ROTATED, "k2"))
    fetched = auth_server.jwks_requests
    accepted = call(deployment, deployment.token(key=ROTATED, kid="k2"))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["result"]["structuredContent"]["subject"] == "alice"
    assert auth_server.jwks_requests == fetched + 1  # the unknown kid made it fetch the set once


def test_introspected_tokens_through_bearer_auth() -> None:
    with serve_auth_server() as auth_server:
        verifier = IntrospectionVerifier(auth_server.introspection_url, CLIENT_ID, CLIENT_SECRET)
        ran: list[str] = []
        app = FastAPI()
        mount(app, PATH, notes_server(BearerAuth(verifier, authorization_servers=[ISSUER]), ran))
        with serve(app) as base:
            deployment = Deployment(auth_server, base, ran)
            auth_server.active["opaque-1"] = {"sub": "bob", "client_id": "cli", "scope": "notes:read"}
            accepted = call(deployment, "opaque-1")
            assert accepted.status_code == 200, accepted.text
            assert accepted.json()["result"]["structuredContent"] == {
                "subject": "bob",
                "client": "cli",
                "scopes": ["notes:read"],
            }
            refused = call(deployment, "opaque-unknown")
            assert refused.status_code == 401
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
            assert ran == ["whoami"]
