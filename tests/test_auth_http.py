"""`auth=BearerAuth(...)` on the Streamable HTTP endpoint of a real uvicorn: every refusal, exactly.

401 without a token or with a bad one, 400 for malformed credentials, 403 for a missing
required scope, 503 when the verifier itself fails; nothing of a refused request runs; what
an admitted request's tools see.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mcp_asgi import MCPServer, cors_middleware
from mcp_asgi.auth import AccessToken, BearerAuth, HostAuth
from tests.bearer_tokens import ALICE, AUTH_SERVER, READ, WRITE, bearer, protected_server, verify, with_audience
from tests.conftest import serve
from tests.http_helpers import ACCEPT, modern_request

NO_TOKEN_MESSAGE = (
    "Unauthorized: this MCP endpoint needs an OAuth access token. Send 'Authorization: Bearer <token>'; "
    "the resource_metadata URL in the WWW-Authenticate header names the authorization server that issues them"
)


@pytest.fixture(scope="module")
def ran() -> list[str]:
    return []


@pytest.fixture(scope="module")
def base(ran: list[str]) -> Iterator[str]:
    with serve(protected_server(ran, required_scopes=[READ]).http_app()) as url:
        yield url


def call(name: str, arguments: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 tools/call and its headers."""
    return modern_request("tools/call", {"name": name, "arguments": arguments or {}})


async def post(url: str, headers: dict[str, str], body: Any = None, **options: Any) -> httpx.Response:
    if body is None:
        body, modern = call("record", {"text": "should not run"})
        headers = {**modern, **headers}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(url, json=body, headers=headers, **options)


def metadata_url(base: str, path: str = "/mcp") -> str:
    return f"{base}/.well-known/oauth-protected-resource{path}"


async def test_no_token_gets_401_with_the_metadata_url_and_no_error_code(base, ran):
    response = await post(f"{base}/mcp", {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (f'Bearer scope="{READ}", resource_metadata="{metadata_url(base)}"')
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"jsonrpc": "2.0", "error": {"code": -32001, "message": NO_TOKEN_MESSAGE}}
    assert ran == []


async def test_another_scheme_is_as_if_no_token_was_sent(base):
    response = await post(f"{base}/mcp", {"authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer scope="{READ}", resource_metadata="{metadata_url(base)}"'


@pytest.mark.parametrize(
    ("token", "description"),
    [
        ("unknown", "the access token is invalid or expired"),
        ("expired", "the access token expired"),
        ("elsewhere", "the access token was issued for another resource"),
    ],
)
async def test_a_bad_token_gets_401_invalid_token(base, ran, token, description):
    response = await post(f"{base}/mcp", bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{description}", scope="{READ}", '
        f'resource_metadata="{metadata_url(base)}"'
    )
    error = response.json()["error"]
    assert error["code"] == -32001 and error["message"].startswith("Unauthorized: the access token ")
    assert ran == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer a,b", "Bearer two words", "Bearer t\u00f6k".encode(), 'Bearer "quoted"', "Bearer a=b"],
)
async def test_malformed_bearer_credentials_get_400_invalid_request(base, authorization):
    response = await post(f"{base}/mcp", {"authorization": authorization})
    assert response.status_code == 400
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_request", error_description="malformed Bearer credentials", '
        f'scope="{READ}", resource_metadata="{metadata_url(base)}"'
    )
    assert response.json()["error"]["code"] == -32600


async def test_two_authorization_headers_get_400(base):
    body, headers = call("record", {"text": "x"})
    async with httpx.AsyncClient(timeout=10) as http:
        request = http.build_request("POST", f"{base}/mcp", json=body, headers=headers)
        request.headers = httpx.Headers(
            [*request.headers.multi_items(), *[("authorization", "Bearer alice-token")] * 2]
        )
        response = await http.send(request)
    assert response.status_code == 400
    assert (
        'error="invalid_request", error_description="more than one Authorization header"'
        in (response.headers["www-authenticate"])
    )


async def test_a_token_in_the_query_string_is_refused_even_beside_a_valid_header(base, ran):
    for headers in ({}, ALICE):
        response = await post(f"{base}/mcp?access_token=alice-token", headers)
        assert response.status_code == 400
        assert "in the URL query string is not accepted" in response.json()["error"]["message"]
        assert (
            'error_description="access tokens are not accepted in the query string"'
            in (response.headers["www-authenticate"])
        )
    assert ran == []


async def test_a_missing_required_scope_gets_403_insufficient_scope():
    with serve(protected_server(required_scopes=[READ, WRITE]).http_app()) as base:
        response = await post(f"{base}/mcp", bearer("read-only"))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description="the access token lacks the scope(s) notes:write", '
        f'scope="{READ} {WRITE}", resource_metadata="{metadata_url(base)}"'
    )
    error = response.json()["error"]
    assert error["code"] == -32003
    assert error["message"].startswith("Forbidden: the access token lacks the scope(s) notes:write")


@pytest.mark.parametrize("token", ["broken", "not-a-token-object"])
async def test_a_failing_verifier_is_503_not_the_clients_fault(base, ran, token, caplog):
    with caplog.at_level(logging.ERROR, logger="mcp_asgi"):
        response = await post(f"{base}/mcp", bearer(token))
    assert response.status_code == 503
    assert "www-authenticate" not in response.headers
    assert response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert error["code"] == -32000 and error["message"].startswith("Service Unavailable: the access token could not")
    assert any("token verifier" in record.getMessage() for record in caplog.records)
    assert ran == []


async def test_a_valid_token_reaches_the_tool_which_sees_who_called(base, ran):
    body, headers = call("whoami")
    response = await post(f"{base}/mcp", {**headers, **ALICE}, body)
    assert response.status_code == 200, response.text
    seen = response.json()["result"]["structuredContent"]
    assert seen == {
        "token": "alice-token",
        "client_id": "notes-app",
        "identity": "notes-app|alice",
        "display_name": "alice",
        "authenticated": True,
        "scopes": [READ, WRITE],
        "challenge": (
            f'Bearer error="insufficient_scope", scope="notes:admin", resource_metadata="{metadata_url(base)}"'
        ),
    }
    body, headers = call("record", {"text": "by alice"})
    assert (await post(f"{base}/mcp", {**headers, **ALICE}, body)).status_code == 200
    assert ran[-1] == "by alice"
    ran.clear()


async def test_the_2025_handshake_needs_the_token_too(base, ran):
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    refused = await post(f"{base}/mcp", {"accept": ACCEPT}, initialize)
    assert refused.status_code == 401 and "mcp-session-id" not in refused.headers
    accepted = await post(f"{base}/mcp", {"accept": ACCEPT, **ALICE}, initialize)
    assert accepted.status_code == 200 and accepted.headers["mcp-session-id"]
    async with httpx.AsyncClient(timeout=10) as http:
        for method in ("GET", "DELETE"):
            response = await http.request(method, f"{base}/mcp", headers={"mcp-session-id": "x", "accept": ACCEPT})
            assert response.status_code == 401, method


def test_a_refused_request_body_is_never_read(base):
    """Headers announcing a 1 MB body that never comes: the 401 arrives at once (no 408 after 30 s)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: {ACCEPT}\r\nContent-Length: 1000000\r\n\r\n".encode()
        )
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 401 "), head


async def test_the_host_origin_guard_answers_before_auth(base):
    response = await post(f"{base}/mcp", {"host": "evil.example"})
    assert response.status_code == 403
    assert "www-authenticate" not in response.headers
    assert "Host header 'evil.example' is not allowed" in response.json()["error"]["message"]


async def test_a_cors_preflight_is_never_challenged():
    mcp = protected_server()
    origin = "https://app.example.com"
    preflight = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    with serve(mcp.http_app(middleware=[cors_middleware([origin])])) as with_cors, serve(mcp.http_app()) as plain:
        async with httpx.AsyncClient(timeout=10) as http:
            answered = await http.options(f"{with_cors}/mcp", headers=preflight)
            assert answered.status_code == 200
            assert answered.headers["access-control-allow-origin"] == origin
            # The browser can read the challenge of the real request.
            refused = await http.post(f"{with_cors}/mcp", json={}, headers={"origin": origin})
            assert refused.status_code == 401
            assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
            # Without a CORS middleware OPTIONS is not a method of the endpoint: 405, never 401.
            bare = await http.options(f"{plain}/mcp")
            assert bare.status_code == 405 and "www-authenticate" not in bare.headers


async def test_custom_routes_stay_public(base):
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{base}/health")
    assert response.status_code == 200 and response.text == "ok"


async def test_a_custom_route_opts_in_to_the_endpoints_auth():
    mcp = protected_server()

    @mcp.custom_route("/me", methods=["GET"], auth=True)
    async def me(request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"identity": request.user.identity, "scopes": sorted(request.auth.scopes)})

    with serve(mcp.http_app()) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            refused = await http.get(f"{base}/me")
            allowed = await http.get(f"{base}/me", headers=ALICE)
            public = await http.get(f"{base}/health")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == f'Bearer resource_metadata="{metadata_url(base)}"'
    assert allowed.json() == {"identity": "notes-app|alice", "scopes": ["notes:read", "notes:write"]}
    assert public.status_code == 200


def test_a_custom_route_asking_for_auth_on_a_server_without_it_is_an_error():
    mcp = MCPServer("open")

    @mcp.custom_route("/me", auth=True)
    async def me(request: Any) -> Any: ...

    with pytest.raises(ValueError, match="custom route '/me' asks for auth=True, but the server has no auth"):
        mcp.http_app()


async def test_audience_must_name_this_endpoint_unless_the_verifier_checks_its_own():
    with_audience("for-us", "http://127.0.0.1:1/elsewhere")  # replaced below once the port is known
    mcp = protected_server()
    with serve(mcp.http_app()) as base:
        body, headers = call("whoami")
        with_audience("for-us", f"{base}/mcp/", "https://other.example")  # a trailing slash is the same resource
        assert (await post(f"{base}/mcp", {**headers, **bearer("for-us")}, body)).status_code == 200
        with_audience("for-us", f"{base}/other")
        assert (await post(f"{base}/mcp", {**headers, **bearer("for-us")}, body)).status_code == 401

    class OwnAudience:
        """A verifier that checked `aud` itself (as JWTVerifier(audience=...) does)."""

        audience = "https://mcp.example.com/mcp"

        async def __call__(self, token: str) -> AccessToken | None:
            return await verify(token)

    own = MCPServer("Own", auth=BearerAuth(OwnAudience()))
    with serve(own.http_app()) as base:
        assert (await post(f"{base}/mcp", bearer("elsewhere"))).status_code != 401


async def test_an_explicit_resource_is_the_audience_and_the_documents_resource():
    mcp = protected_server(resource="https://mcp.example.com/mcp")
    with_audience("for-public-name", "https://mcp.example.com/mcp")
    with serve(mcp.http_app()) as base:
        body, headers = call("whoami")
        assert (await post(f"{base}/mcp", {**headers, **bearer("for-public-name")}, body)).status_code == 200
        async with httpx.AsyncClient(timeout=10) as http:
            document = (await http.get(metadata_url(base))).json()
    assert document["resource"] == "https://mcp.example.com/mcp"


def test_auth_takes_bearer_auth_or_host_auth_only():
    with pytest.raises(TypeError, match=r"pass auth=BearerAuth\(your_function\)"):
        MCPServer("x", auth=verify)
    with pytest.raises(TypeError, match="must be BearerAuth"):
        MCPServer("x").http_app(auth="token")
    with pytest.raises(TypeError, match="async callable"):
        BearerAuth(lambda token: None)
    with pytest.raises(TypeError, match="list of scope names"):
        BearerAuth(verify, required_scopes="notes:read")
    with pytest.raises(ValueError, match="OAuth scope names"):
        HostAuth(required_scopes=["two words"])
    with pytest.raises(ValueError, match="absolute http"):
        BearerAuth(verify, authorization_servers=["auth.example.com"])
    with pytest.raises(ValueError, match="no #fragment"):
        BearerAuth(verify, resource="https://mcp.example.com/mcp#x")


async def test_http_app_auth_wins_over_the_servers():
    mcp = protected_server(required_scopes=[WRITE])
    with serve(mcp.http_app(auth=BearerAuth(verify, authorization_servers=[AUTH_SERVER]))) as base:
        body, headers = call("whoami")
        assert (await post(f"{base}/mcp", {**headers, **bearer("read-only")}, body)).status_code == 200
    with serve(mcp.http_app()) as base:
        assert (await post(f"{base}/mcp", bearer("read-only"))).status_code == 403


def test_json_body_of_a_refusal_is_one_json_rpc_error(base):
    response = httpx.post(f"{base}/mcp", content=b"not even json", headers={"content-type": "text/plain"})
    assert response.status_code == 401  # auth first: the body is not looked at
    assert json.loads(response.content)["error"]["code"] == -32001
