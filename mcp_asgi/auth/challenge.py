"""The bearer-token side of HTTP: reading `Authorization`, writing `WWW-Authenticate` (RFC 6750, RFC 9728).

Refusals, and what each one answers (the JSON-RPC body has `id: null`: the request body is
never read before auth):

| case                                                 | status | `error=`             | JSON-RPC code |
|------------------------------------------------------|--------|----------------------|---------------|
| no credentials, or another scheme (`Basic ...`)     | 401    | (none, RFC 6750 3.1) | -32001        |
| malformed: `Bearer` without a token68, several       | 400    | `invalid_request`    | -32600        |
| `Authorization` headers, `access_token` in the query |        |                      |               |
| token refused, expired, or minted for another        | 401    | `invalid_token`      | -32001        |
| resource (audience)                                  |        |                      |               |
| token lacks a required scope                         | 403    | `insufficient_scope` | -32003        |
| the verifier raised (not the client's fault)         | 503    | (no challenge)       | -32000        |

Every challenge names `resource_metadata` (where the RFC 9728 document is) and, when
scopes are required, `scope`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import Scope, Send

from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, MCPError, encode, error_response
from mcp_asgi.protocol.scopes import INSUFFICIENT_SCOPE as FORBIDDEN

UNAUTHORIZED = -32001
UNAVAILABLE = -32000

# RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_TOKEN68 = re.compile(rb"[A-Za-z0-9\-._~+/]+=*")
# error_description may hold %x20-21 / %x23-5B / %x5D-7E only (RFC 6750 section 3).
_DESCRIPTION_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


@dataclass(frozen=True)
class Refusal:
    """Why a request is not let through: the HTTP status, the RFC 6750 error code, and what to tell the client."""

    status: int
    error: str | None
    message: str
    description: str | None = None


def bearer_token(scope: Scope) -> str | Refusal | None:
    """The bearer token of the request; None when it sent no bearer credentials; a Refusal when malformed."""
    query = scope.get("query_string", b"")
    if query and re.search(rb"(^|&)access_token=", query):
        return Refusal(
            400,
            "invalid_request",
            "Bad Request: an access token in the URL query string is not accepted (the MCP authorization spec "
            "forbids it); send it in the header 'Authorization: Bearer <token>'",
            "access tokens are not accepted in the query string",
        )
    values = [value for name, value in scope.get("headers", ()) if name == b"authorization"]
    if not values:
        return None
    if len(values) > 1:
        return Refusal(
            400,
            "invalid_request",
            "Bad Request: more than one Authorization header; send exactly one 'Authorization: Bearer <token>'",
            "more than one Authorization header",
        )
    scheme, _, rest = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None  # another scheme: as if no credentials were sent (RFC 6750 section 3.1)
    token = rest.strip(b" ")
    if not token or not _TOKEN68.fullmatch(token):
        return Refusal(
            400,
            "invalid_request",
            "Bad Request: the Authorization header must be 'Bearer <token>' with one token of letters, digits "
            "and -._~+/ (RFC 6750)",
            "malformed Bearer credentials",
        )
    return token.decode("ascii")


def challenge(error: str | None, scopes: Sequence[str], metadata: str, description: str | None = None) -> str:
    """The `WWW-Authenticate` value: `Bearer error=..., error_description=..., scope=..., resource_metadata=...`."""
    params = []
    if error:
        params.append(f'error="{_quoted(error)}"')
    if description:
        params.append(f'error_description="{_quoted(description)}"')
    if scopes:
        params.append(f'scope="{_quoted(" ".join(scopes))}"')
    params.append(f'resource_metadata="{_quoted(metadata)}"')
    return "Bearer " + ", ".join(params)


def _quoted(text: str) -> str:
    # Only characters a quoted-string may hold unescaped; clients parse these values with simple regexes.
    return _DESCRIPTION_UNSAFE.sub("", text)


async def send_refusal(send: Send, status: int, code: int, message: str, www_authenticate: str | None) -> None:
    """The refusal as one JSON-RPC error response (id null) with its challenge header."""
    body = encode(error_response(None, MCPError(code, message)))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if www_authenticate is not None:
        headers.append((b"www-authenticate", www_authenticate.encode("latin-1")))
    if status == 503:
        headers.append((b"retry-after", b"5"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def code_for(status: int) -> int:
    """The JSON-RPC error code of a refusal with this HTTP status."""
    return {400: INVALID_REQUEST, 401: UNAUTHORIZED, 403: FORBIDDEN}.get(status, UNAVAILABLE)
