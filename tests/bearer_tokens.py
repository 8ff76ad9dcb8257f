"""Test tokens, a verifier for them, and a protected server whose tools show what auth set.

The verifier is a plain async callable (the custom-scheme case of `BearerAuth`): the JWT and
introspection verifiers have their own tests.
"""

from __future__ import annotations

import time
from typing import Any

from mcp_asgi import Context, MCPServer
from mcp_asgi.auth import AccessToken, BearerAuth

AUTH_SERVER = "https://auth.example.com"
READ, WRITE = "notes:read", "notes:write"


def _token(name: str, client: str = "notes-app", subject: str | None = "alice", **fields: Any) -> AccessToken:
    fields.setdefault("scopes", frozenset({READ, WRITE}))
    return AccessToken(name, client_id=client, subject=subject, **fields)


TOKENS: dict[str, AccessToken] = {
    "alice-token": _token("alice-token", expires_at=int(time.time()) + 3600, claims={"name": "Alice"}),
    # A refreshed token: another string, the same client and subject, so the same principal.
    "alice-refreshed": _token("alice-refreshed"),
    "bob-token": _token("bob-token", subject="bob"),
    "read-only": _token("read-only", subject="carol", scopes=frozenset({READ})),
    "expired": _token("expired", expires_at=int(time.time()) - 10),
    "elsewhere": _token("elsewhere", audience=("https://elsewhere.example/mcp",)),
    # A client-credentials token: no subject, the client is the principal.
    "robot": _token("robot", client="robot-client", subject=None),
}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


ALICE, BOB = bearer("alice-token"), bearer("bob-token")


async def verify(token: str) -> AccessToken | None:
    """What an authorization server would say of the test tokens; "broken" makes the verifier itself fail."""
    if token == "broken":
        raise ConnectionError("the authorization server is down")
    if token == "not-a-token-object":
        return "yes"  # type: ignore[return-value]
    return TOKENS.get(token)


def with_audience(token: str, *audience: str) -> None:
    """Register `token` as alice's with this `aud`."""
    TOKENS[token] = _token(token, audience=audience)


def protected_server(ran: list[str] | None = None, **auth: Any) -> MCPServer:
    """A server behind `BearerAuth(verify, **auth)`; its `record` tool appends to `ran` (the side effect)."""
    options = {"authorization_servers": [AUTH_SERVER], **auth}
    mcp = MCPServer("Notes", auth=BearerAuth(verify, **options))
    effects = ran if ran is not None else []

    @mcp.tool
    def record(text: str) -> str:
        effects.append(text)
        return "recorded"

    @mcp.tool
    def whoami(ctx: Context) -> dict[str, Any]:
        """What a tool sees of the caller: ctx.access_token and the Starlette user and credentials."""
        request = ctx.request
        assert request is not None
        token = ctx.access_token
        challenge = request.scope["mcp_asgi.challenge"]("insufficient_scope", ["notes:admin"])
        return {
            "token": None if token is None else token.token,
            "client_id": None if token is None else token.client_id,
            "identity": request.user.identity,
            "display_name": request.user.display_name,
            "authenticated": request.user.is_authenticated,
            "scopes": list(request.auth.scopes),
            "challenge": challenge,
        }

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Any) -> Any:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("ok")

    return mcp
