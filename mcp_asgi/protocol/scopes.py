"""Scopes per tool, resource and prompt: what a request must be granted, and the 403 when it is not.

`@mcp.tool(scopes=["notes:write"])` (and the same on resources, resource templates and
prompts) names scopes every one of which the request's token must grant. The granted
scopes are read the Starlette way, from `scope["auth"].scopes` (an `AuthCredentials`):
`BearerAuth`/`HostAuth` set it from the verified token, and a host's own
`AuthenticationMiddleware` sets the same key, so either kind of authentication works.

A request lacking one gets HTTP 403 with JSON-RPC error `INSUFFICIENT_SCOPE` and
`WWW-Authenticate: Bearer error="insufficient_scope", scope="..."` naming all the scopes
the operation needs (step-up authorization: the client asks for a token with them and
retries). A request with no authentication at all is refused the same way: a scoped
component on a server without auth is closed over HTTP, never silently open.

Only HTTP requests are checked. Over stdio the client is the local process that started
the server, trusted like its user, and there is no token to read scopes from.

Where the 403 cannot be a status: a reply already streaming as SSE (progress sent before a
tool read a scoped resource) ends with the same JSON-RPC error as its last event, and the
legacy HTTP+SSE transport (each POST is 202 before the call runs) sends it on the stream,
having checked the scopes of the request that opened the stream.

Scopes match as exact strings: a broader scope that implies narrower ones is expressed by
the verifier (or the host's backend) granting the narrower ones too. With
`MCPServer(hide_unauthorized=True)` lists over HTTP leave out what the request may not use
(and are then `cacheScope: "private"`); a hidden component called by name still gets the
403, so a client that knows it can step up.

Imports nothing above `protocol/` (the protocol core calls it) but Starlette's types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mcp_asgi.protocol.jsonrpc import MCPError

if TYPE_CHECKING:
    from starlette.requests import Request

# JSON-RPC code of the 403 (implementation-defined server range, beside -32002 "resource not found").
INSUFFICIENT_SCOPE = -32003
# Where `BearerAuth`/`HostAuth` leave the builder of their challenge header: (error, scopes) -> value.
CHALLENGE_KEY = "mcp_asgi.challenge"

# RFC 6749 section 3.3 scope-token: printable ASCII but space, '"' and '\'. Anything else could
# not be written in the challenge's quoted `scope=` parameter.
_SCOPE_CHARS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}


def is_scope_token(name: str) -> bool:
    """Whether `name` is one RFC 6749 scope-token (what BearerAuth's and the components' scopes must be)."""
    return bool(name) and _SCOPE_CHARS.issuperset(name)


class InsufficientScope(MCPError):
    """The request lacks scopes a component requires: HTTP 403 with an `insufficient_scope` challenge.

    `required` are all the scopes the operation needs (the challenge's `scope=`, what the
    client should ask for); `missing` those the request was not granted.
    """

    def __init__(
        self,
        what: str,
        required: Sequence[str],
        missing: Sequence[str],
        *,
        authenticated: bool = True,
        challenge: str | None = None,
    ) -> None:
        needed = " ".join(missing)
        if authenticated:
            message = (
                f"Insufficient scope: {what} requires scope(s) {needed}, which the access token does not grant; "
                "obtain a token with them and retry"
            )
        else:
            message = (
                f"Insufficient scope: {what} requires scope(s) {needed}, and the request is not authenticated; "
                "authentication is needed (the server's auth=, or the host's), then a token with them"
            )
        if challenge is None:
            challenge = f'Bearer error="insufficient_scope", scope="{" ".join(required)}"'
        super().__init__(
            INSUFFICIENT_SCOPE,
            message,
            {"requiredScopes": list(required)},
            http_status=403,
            headers={"WWW-Authenticate": challenge},
        )
        self.required = tuple(required)
        self.missing = tuple(missing)


def validate_scopes(scopes: Any, what: str) -> tuple[str, ...]:
    """The scopes a component requires, checked once when it is registered; `what` names it in errors.

    A list, tuple or set of scope strings (None or empty: no scope needed). A set is sorted,
    so the challenge names its scopes in the same order every time.
    """
    if scopes is None:
        return ()
    if isinstance(scopes, str) or not isinstance(scopes, (list, tuple, set, frozenset)):
        raise TypeError(f"{what}: `scopes` must be a list of scope strings, like ['notes:write']; got {scopes!r}")
    for scope in scopes:
        if not isinstance(scope, str):
            raise TypeError(f"{what}: each scope must be a string; got {scope!r}")
        if not is_scope_token(scope):
            raise ValueError(
                f"{what}: scope {scope!r} is not a valid OAuth scope (non-empty, printable ASCII, "
                "no spaces, quotes or backslashes); list several scopes as separate strings"
            )
    ordered: Iterable[str] = sorted(scopes) if isinstance(scopes, (set, frozenset)) else scopes
    return tuple(dict.fromkeys(ordered))


def granted_scopes(request: Request) -> frozenset[str]:
    """The scopes granted to a request: `scope["auth"].scopes` (Starlette's `AuthCredentials`), else none."""
    scopes = getattr(request.scope.get("auth"), "scopes", None)
    if not scopes or isinstance(scopes, str):
        return frozenset()
    return frozenset(scopes)


def check_scopes(required: Sequence[str], request: Request | None, what: str) -> None:
    """Raise `InsufficientScope` unless `request` was granted every scope in `required`.

    No request (stdio) is not checked. `what` names the operation in the message, like
    "tools/call of tool 'delete_note'".
    """
    if request is None or not required:
        return
    granted = granted_scopes(request)
    missing = [scope for scope in required if scope not in granted]
    if not missing:
        return
    challenge: Callable[[str, Sequence[str]], str] | None = request.scope.get(CHALLENGE_KEY)
    raise InsufficientScope(
        what,
        required,
        missing,
        authenticated=_authenticated(request.scope),
        challenge=challenge("insufficient_scope", required) if challenge is not None else None,
    )


def _authenticated(scope: Any) -> bool:
    # Starlette's AuthenticationMiddleware sets `auth` on anonymous requests too, beside an
    # UnauthenticatedUser; only the message depends on telling them apart.
    if "auth" not in scope:
        return False
    try:
        return bool(getattr(scope.get("user"), "is_authenticated", True))
    except NotImplementedError:
        return True


def allows(item: Any, granted: frozenset[str]) -> bool:
    """Whether a component is visible to a request granted `granted` (`hide_unauthorized`)."""
    scopes = item.scopes
    return not scopes or granted.issuperset(scopes)
