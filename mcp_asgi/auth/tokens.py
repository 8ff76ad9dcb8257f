"""What a verified bearer token says, and the shape every verifier has."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AccessToken:
    """A bearer token a verifier accepted, and what it grants.

    `audience` is the token's `aud` (the resources it was minted for); a verifier that
    was given no audience of its own leaves the check to `BearerAuth`, which refuses a
    token whose audience does not name the endpoint's resource URL.
    """

    token: str
    client_id: str | None = None
    subject: str | None = None
    scopes: frozenset[str] = frozenset()
    # Seconds since the epoch, as in the `exp` claim; None when the token does not say.
    expires_at: int | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    audience: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """Who the token speaks for: what sessions and `requestState` are bound to.

        The client id and the subject together, so the same user through two clients (or
        one client for two users) is two principals; a refreshed token keeps its identity.
        """
        return f"{self.client_id or ''}|{self.subject or ''}"


# Any async callable taking the raw token: JWTVerifier, IntrospectionVerifier, or your own.
# It returns None for a token it does not accept (bad signature, expired, revoked, unknown).
TokenVerifier = Callable[[str], Awaitable["AccessToken | None"]]
