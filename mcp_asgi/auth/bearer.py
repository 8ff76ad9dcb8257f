"""`auth=` for the MCP endpoint: `BearerAuth` checks OAuth bearer tokens, `HostAuth` reuses the host's login.

    mcp = MCPServer("Notes", auth=BearerAuth(
        JWTVerifier(jwks_uri="https://auth.example.com/.well-known/jwks.json", issuer="https://auth.example.com"),
        authorization_servers=["https://auth.example.com"],
        required_scopes=["notes:read"],
    ))

Either one is applied by the HTTP transports (Streamable HTTP and legacy HTTP+SSE) to every
MCP request, after the Host/Origin check and before the body is read: a refused request
runs nothing. The challenges are described in `mcp_asgi/auth/challenge.py`, the URLs in
`mcp_asgi/auth/resource.py`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.authentication import AuthCredentials, BaseUser
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi.auth.challenge import (
    UNAVAILABLE,
    Refusal,
    bearer_token,
    challenge,
    code_for,
    send_refusal,
)
from mcp_asgi.auth.resource import check_resource, metadata_url, normalized, resource_url
from mcp_asgi.auth.tokens import AccessToken, TokenVerifier
from mcp_asgi.protocol.scopes import is_scope_token

__all__ = ["BearerAuth", "HostAuth", "TokenUser", "check_auth"]

logger = logging.getLogger("mcp_asgi")

# Keys this module sets in the ASGI scope of every admitted request.
ACCESS_TOKEN_KEY = "mcp_asgi.access_token"
# A callable (error, scopes) -> the full WWW-Authenticate value for this request (403s of tools use it).
CHALLENGE_KEY = "mcp_asgi.challenge"

_NO_TOKEN = (
    "Unauthorized: this MCP endpoint needs an OAuth access token. Send 'Authorization: Bearer <token>'; "
    "the resource_metadata URL in the WWW-Authenticate header names the authorization server that issues them"
)
_BAD_TOKEN = (
    "Unauthorized: the access token is invalid or expired; get a new one from the authorization server "
    "(see the resource_metadata URL in the WWW-Authenticate header) and retry"
)


class TokenUser(BaseUser):
    """The Starlette user of a request that carried a verified token (`request.user`)."""

    def __init__(self, access_token: AccessToken) -> None:
        self.access_token = access_token

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.access_token.subject or self.access_token.client_id or ""

    @property
    def identity(self) -> str:
        """What sessions and `requestState` are bound to: the token's client id and subject."""
        return self.access_token.identity

    def __repr__(self) -> str:
        return f"TokenUser(client_id={self.access_token.client_id!r}, subject={self.access_token.subject!r})"


class _Auth:
    """What BearerAuth and HostAuth share: the metadata they publish and the scopes every request needs."""

    def __init__(
        self,
        resource: str | None,
        authorization_servers: Sequence[str],
        scopes_supported: Sequence[str] | None,
        required_scopes: Sequence[str],
    ) -> None:
        self.resource = check_resource(resource)
        self.authorization_servers = _urls(authorization_servers, "authorization_servers")
        self.scopes_supported = None if scopes_supported is None else _scopes(scopes_supported, "scopes_supported")
        self.required_scopes = _scopes(required_scopes, "required_scopes")

    def metadata(self, resource: str) -> dict[str, Any]:
        """The RFC 9728 document for the endpoint at `resource` (the explicit `resource=` wins)."""
        document: dict[str, Any] = {"resource": self.resource or resource}
        if self.authorization_servers:
            document["authorization_servers"] = list(self.authorization_servers)
        if self.scopes_supported is not None:
            document["scopes_supported"] = list(self.scopes_supported)
        document["bearer_methods_supported"] = ["header"]
        return document

    async def authenticate(self, scope: Scope, resource: Callable[[], str]) -> Refusal | None:
        raise NotImplementedError


class BearerAuth(_Auth):
    """Require an OAuth 2.1 bearer token on every MCP request, checked by `verifier`.

    `verifier` is any async callable `token -> AccessToken | None`: `JWTVerifier`,
    `IntrospectionVerifier`, or your own (an API-key lookup, say). `resource` is the
    endpoint's canonical URL; by default it is computed per request (scheme, `Host`, mount
    prefix, `root_path`), which is right wherever the app is mounted. `authorization_servers`
    and `scopes_supported` go into the RFC 9728 metadata; `required_scopes` must all be
    granted to the token (else 403 `insufficient_scope`).

    Audience: when the verifier has no `audience` of its own (`verifier.audience` absent or
    None) and the token names an audience (`AccessToken.audience`), the endpoint's resource
    URL must be one of them (scheme and host compared case-insensitively, a trailing slash
    ignored), else 401 `invalid_token`: a token minted for another server is refused. With a
    computed `resource`, that URL comes from the request's `Host` header; in production pass
    `resource=` (or `http_app(allowed_hosts=...)`), so the check does not rest on a header the
    client chose.
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        resource: str | None = None,
        authorization_servers: Sequence[str] = (),
        scopes_supported: Sequence[str] | None = None,
        required_scopes: Sequence[str] = (),
    ) -> None:
        if not _is_async_callable(verifier):
            raise TypeError(
                f"BearerAuth `verifier` must be an async callable token -> AccessToken | None "
                f"(JWTVerifier, IntrospectionVerifier or your own function), got {verifier!r}"
            )
        super().__init__(resource, authorization_servers, scopes_supported, required_scopes)
        self.verifier = verifier

    def __repr__(self) -> str:
        return f"BearerAuth({self.verifier!r}, required_scopes={list(self.required_scopes)!r})"

    async def authenticate(self, scope: Scope, resource: Callable[[], str]) -> Refusal | None:
        """Verify the request's token and set `scope["user"]`/`["auth"]`; the refusal, or None to let it in."""
        token = bearer_token(scope)
        if token is None:
            return Refusal(401, None, _NO_TOKEN)
        if isinstance(token, Refusal):
            return token
        try:
            access = await self.verifier(token)
        except Exception:
            logger.exception("The token verifier %r raised; answering 503", self.verifier)
            return Refusal(503, None, _UNAVAILABLE)
        if access is None:
            return Refusal(401, "invalid_token", _BAD_TOKEN, "the access token is invalid or expired")
        if not isinstance(access, AccessToken):
            logger.error("The token verifier %r returned %r, not an AccessToken or None", self.verifier, access)
            return Refusal(503, None, _UNAVAILABLE)
        if access.expires_at is not None and access.expires_at <= time.time():
            return Refusal(401, "invalid_token", _BAD_TOKEN, "the access token expired")
        if access.audience and getattr(self.verifier, "audience", None) is None:
            url = normalized(self.resource or resource())
            if url not in {normalized(aud) for aud in access.audience}:
                return Refusal(
                    401,
                    "invalid_token",
                    f"Unauthorized: the access token was issued for another resource, not {url}; request a token "
                    f"with resource={url} from the authorization server",
                    "the access token was issued for another resource",
                )
        scope["user"] = TokenUser(access)
        scope["auth"] = AuthCredentials(sorted(access.scopes))
        scope[ACCESS_TOKEN_KEY] = access
        return _missing_scopes(self.required_scopes, access.scopes)


class HostAuth(_Auth):
    """Accept the user the host app already authenticated (Starlette's `AuthenticationMiddleware`, say).

    A request whose `scope["user"]` is missing or not authenticated gets the same 401
    challenge as `BearerAuth`; `required_scopes` are checked against `scope["auth"].scopes`
    (403 `insufficient_scope`). `resource`, `authorization_servers` and `scopes_supported` fill
    the RFC 9728 metadata, when the host's login is OAuth too.
    """

    def __init__(
        self,
        required_scopes: Sequence[str] = (),
        *,
        resource: str | None = None,
        authorization_servers: Sequence[str] = (),
        scopes_supported: Sequence[str] | None = None,
    ) -> None:
        super().__init__(resource, authorization_servers, scopes_supported, required_scopes)

    def __repr__(self) -> str:
        return f"HostAuth(required_scopes={list(self.required_scopes)!r})"

    async def authenticate(self, scope: Scope, resource: Callable[[], str]) -> Refusal | None:
        user = scope.get("user")
        try:
            authenticated = user is not None and bool(user.is_authenticated)
        except (AttributeError, NotImplementedError):
            authenticated = False
        if not authenticated:
            return Refusal(
                401,
                None,
                "Unauthorized: this MCP endpoint needs an authenticated user; log in to the application "
                "(the resource_metadata URL in the WWW-Authenticate header says how to get a token)",
            )
        credentials = scope.get("auth")
        granted = getattr(credentials, "scopes", None) or ()
        return _missing_scopes(self.required_scopes, granted)


_UNAVAILABLE = (
    "Service Unavailable: the access token could not be checked right now (the token verifier failed); retry later"
)


def _missing_scopes(required: Sequence[str], granted: Any) -> Refusal | None:
    missing = [name for name in required if name not in granted]
    if not missing:
        return None
    return Refusal(
        403,
        "insufficient_scope",
        f"Forbidden: the access token lacks the scope(s) {' '.join(missing)}; request a token with scope "
        f"'{' '.join(required)}' from the authorization server and retry",
        f"the access token lacks the scope(s) {' '.join(missing)}",
    )


class AuthGate:
    """Applies `auth` to the requests of one MCP endpoint (the one at `endpoint_path` in its MCP app).

    `app` is that MCP app, set by `http_app()` once built: `mount()` marks the requests it
    routes there, so the challenge points at the metadata it registered on the host.
    """

    def __init__(self, auth: BearerAuth | HostAuth, endpoint_path: str) -> None:
        self.auth = auth
        self.endpoint_path = endpoint_path
        self.app: Any = None

    def resource(self, scope: Scope) -> str:
        """The endpoint's resource URL for this request: the explicit one, else its public URL."""
        return self.auth.resource or resource_url(scope, self.endpoint_path)

    def metadata_url(self, scope: Scope) -> str:
        return metadata_url(scope, self.endpoint_path, self.app)

    def challenge(self, scope: Scope, error: str | None, scopes: Sequence[str], description: str | None = None) -> str:
        """The full `WWW-Authenticate` value for a refusal of this request."""
        return challenge(error, scopes, self.metadata_url(scope), description)

    async def admit(self, scope: Scope, send: Send) -> bool:
        """True to go on with the request; False when a refusal was sent (nothing else may run)."""
        if scope["method"] == "OPTIONS":
            return True  # a CORS preflight carries no credentials by design
        scope[CHALLENGE_KEY] = functools.partial(self._challenge_for, scope)
        refusal = await self.auth.authenticate(scope, functools.partial(resource_url, scope, self.endpoint_path))
        if refusal is None:
            return True
        header = None
        if refusal.status != 503:
            scopes = self.auth.required_scopes
            header = self.challenge(scope, refusal.error, scopes, refusal.description)
        code = code_for(refusal.status) if refusal.status != 503 else UNAVAILABLE
        await send_refusal(send, refusal.status, code, refusal.message, header)
        return False

    def _challenge_for(self, scope: Scope, error: str, scopes: Sequence[str]) -> str:
        return self.challenge(scope, error, scopes)


def protected(gate: AuthGate, app: ASGIApp) -> ASGIApp:
    """`app` behind `gate`: a refused request gets its challenge and never reaches it."""

    async def protected_app(scope: Scope, receive: Receive, send: Send) -> None:
        if await gate.admit(scope, send):
            await app(scope, receive, send)

    return protected_app


def check_auth(auth: Any, argument: str = "auth") -> BearerAuth | HostAuth | None:
    """`auth` if it is a BearerAuth, a HostAuth or None; a TypeError that says what to pass otherwise."""
    if auth is None or isinstance(auth, (BearerAuth, HostAuth)):
        return auth
    hint = ""
    if callable(auth):
        hint = f"; to check tokens with your own function, pass {argument}=BearerAuth(your_function)"
    raise TypeError(f"`{argument}` must be BearerAuth(...) or HostAuth(...) from mcp_asgi.auth, got {auth!r}{hint}")


def _is_async_callable(value: Any) -> bool:
    # A function, or an object (JWTVerifier, ...) whose __call__ is `async def`.
    if inspect.iscoroutinefunction(value):
        return True
    return callable(value) and inspect.iscoroutinefunction(type(value).__call__)


def _urls(values: Sequence[str], argument: str) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"`{argument}` must be a list of URLs, not the string {values!r}; write [{values!r}]")
    urls = tuple(values)
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ValueError(
                f"`{argument}` entries must be absolute http(s) URLs such as 'https://auth.example.com', got {url!r}"
            )
    return urls


def _scopes(values: Sequence[str], argument: str) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"`{argument}` must be a list of scope names, not the string {values!r}; write [{values!r}]")
    scopes = tuple(values)
    for name in scopes:
        if not isinstance(name, str) or not is_scope_token(name):
            raise ValueError(
                f"`{argument}` entries must be OAuth scope names (no spaces, quotes or backslashes), got {name!r}"
            )
    return scopes
