"""The principal: computed once from what the host set, used by 2025 sessions and 2026-07-28 requestState alike."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import BaseUser, SimpleUser, UnauthenticatedUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware

from mcp_asgi import Context, MCPServer, mount
from mcp_asgi.principal import principal_of, same_principal
from tests.conftest import serve
from tests.http_helpers import modern_request
from tests.test_session_principal import ALICE, BOB, BearerNames


def scope(user: Any = None, *authorization: bytes) -> dict[str, Any]:
    headers = [(b"host", b"x")] + [(b"authorization", value) for value in authorization]
    result: dict[str, Any] = {"type": "http", "headers": headers}
    if user is not None:
        result["user"] = user
    return result


class Account(BaseUser):
    def __init__(self, identity: str, name: str) -> None:
        self._identity, self._name = identity, name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self._name

    @property
    def identity(self) -> str:
        return self._identity


class NamedOnly(BaseUser):
    """A user class that defines no `identity`: Starlette's BaseUser raises NotImplementedError for it."""

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return "Carol"


def test_an_authenticated_user_is_known_by_identity_then_display_name():
    assert principal_of(scope(Account("u-42", "Alice"))) == "user:u-42"
    assert principal_of(scope(SimpleUser("alice"), b"Bearer t")) == "user:alice"  # the user wins over the header
    assert principal_of(scope(NamedOnly())) == "user:Carol"


def test_without_a_user_the_authorization_credential_is_digested_never_stored():
    principal = principal_of(scope(UnauthenticatedUser(), b"Bearer s3cret-token"))
    assert principal == "authorization:" + hashlib.sha256(b"bearer s3cret-token").hexdigest()
    assert "s3cret" not in principal
    # The scheme is case-insensitive; the credential is not.
    assert principal_of(scope(None, b"bearer s3cret-token")) == principal
    assert principal_of(scope(None, b"Bearer S3cret-token")) != principal
    assert principal_of(scope(None, b"Bearer a", b"Bearer b")) not in (
        principal_of(scope(None, b"Bearer a")),
        principal_of(scope(None, b"Bearer b")),
    )


def test_no_user_and_no_credential_is_anonymous():
    assert principal_of(scope()) is None
    assert principal_of(scope(UnauthenticatedUser())) is None


def test_kinds_cannot_collide():
    digest = principal_of(scope(None, b"Bearer t"))
    assert digest is not None
    # A user named like a digest is still a user.
    assert principal_of(scope(SimpleUser(digest))) == "user:" + digest != digest


def test_same_principal():
    assert same_principal(None, None)
    assert not same_principal("user:a", None) and not same_principal(None, "user:a")
    assert same_principal("user:José", "user:José")  # compare_digest alone refuses non-ASCII str
    assert not same_principal("user:José", "user:Jose")
    assert not same_principal("user:\ud800", "user:a")  # a lone surrogate in a host's identity never raises


def mrtr_server() -> MCPServer:
    mcp = MCPServer("Asker")

    @mcp.tool
    async def two_steps(ctx: Context) -> str:
        first = await ctx.elicit("Name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        second = await ctx.elicit("Colour?", {"type": "object", "properties": {"colour": {"type": "string"}}})
        return f"{first.content['name']} likes {second.content['colour']}"

    return mcp


async def post_modern(http: httpx.AsyncClient, url: str, who: dict[str, str], **params: Any) -> dict[str, Any]:
    caps = {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}
    body, headers = modern_request("tools/call", {"name": "two_steps", "arguments": {}, **params, "_meta": caps})
    return (await http.post(url, json=body, headers={**headers, **who})).json()


@pytest.mark.parametrize("host", ["auth-middleware", "authorization-header"])
async def test_request_state_is_bound_to_the_same_principal_as_sessions(host):
    if host == "auth-middleware":
        app = Starlette(middleware=[Middleware(AuthenticationMiddleware, backend=BearerNames())])
        mount(app, "/mcp", mrtr_server())
    else:
        app = mrtr_server().http_app()
    with serve(app) as base:
        url = f"{base}/mcp"
        async with httpx.AsyncClient(timeout=10) as http:
            first = (await post_modern(http, url, ALICE))["result"]
            (key1,) = first["inputRequests"]
            answer1 = {"action": "accept", "content": {"name": "Alice"}}
            second = (
                await post_modern(http, url, ALICE, inputResponses={key1: answer1}, requestState=first["requestState"])
            )["result"]
            assert second["resultType"] == "input_required"
            (key2,) = second["inputRequests"]
            finish = {"inputResponses": {key2: {"action": "accept", "content": {"colour": "red"}}}}
            finish["requestState"] = second["requestState"]

            # Alice's state (it holds her first answer) is worth nothing to anyone else.
            for stranger in (BOB, {}):
                refused = await post_modern(http, url, stranger, **finish)
                assert refused["error"]["code"] == -32602
                assert "different request" in refused["error"]["message"]
            done = await post_modern(http, url, ALICE, **finish)
            assert done["result"]["content"][0]["text"] == "Alice likes red"
