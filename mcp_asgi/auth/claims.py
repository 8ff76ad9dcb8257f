"""From verified claims (a JWT's payload, an introspection answer) to an `AccessToken`.

Both verifiers read the same claims the same way: scopes from `scope` (a space-separated
string, RFC 8693/9068/7662) or `scp` (a list or string, as several identity providers
write it), the client from `client_id` or `azp`, the user from `sub`, the expiry from
`exp`, the audience from `aud`. A claim of the wrong type makes the token malformed: it is
refused rather than read as "no scopes" or "no subject", which could merge principals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mcp_asgi.auth.tokens import AccessToken


class MalformedClaim(ValueError):
    """A claim is present but not of the type RFC 7519 / 7662 give it; the text names it."""


def access_token(token: str, claims: Mapping[str, Any]) -> AccessToken:
    """The `AccessToken` the claims describe; `MalformedClaim` when one has the wrong type."""
    client_id = _string(claims, "client_id")
    if client_id is None:
        client_id = _string(claims, "azp")
    return AccessToken(
        token=token,
        client_id=client_id,
        subject=_string(claims, "sub"),
        scopes=_scopes(claims),
        expires_at=expiry(claims),
        claims=dict(claims),
        audience=audience(claims),
    )


def expiry(claims: Mapping[str, Any]) -> int | None:
    """The `exp` claim as seconds since the epoch, or None when absent."""
    value = claims.get("exp")
    if value is None:
        return None
    # bool is an int in Python; `"exp": true` is nonsense, not 1970-01-01T00:00:01.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedClaim(f"exp must be a number, not {type(value).__name__}")
    return int(value)


def audience(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """The `aud` claim as a tuple (RFC 7519 allows one string or a list of them); () when absent."""
    value = claims.get("aud")
    if value is None:
        return ()
    if isinstance(value, str):
        values: Sequence[Any] = (value,)
    elif isinstance(value, list):
        values = value
    else:
        raise MalformedClaim(f"aud must be a string or a list of strings, not {type(value).__name__}")
    if not all(isinstance(item, str) and item for item in values):
        raise MalformedClaim("aud must hold only non-empty strings")
    return tuple(values)


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedClaim(f"{name} must be a string, not {type(value).__name__}")
    return value


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    if claims.get("scope") is not None:
        name, value = "scope", claims["scope"]
    elif claims.get("scp") is not None:
        name, value = "scp", claims["scp"]
    else:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if name == "scp" and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(item for item in value if item)
    raise MalformedClaim(f"{name} must be a space-separated string{' or a list of strings' if name == 'scp' else ''}")


def audience_matches(token_audience: tuple[str, ...], wanted: tuple[str, ...]) -> bool:
    """Whether the token was minted for (one of) the wanted audiences."""
    return any(item in token_audience for item in wanted)


def normalized_audience(audience: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A verifier's `audience=` argument as a tuple (None stays None); ValueError when it names nothing."""
    if audience is None:
        return None
    values = (audience,) if isinstance(audience, str) else tuple(audience)
    if not values or not all(isinstance(item, str) and item for item in values):
        raise ValueError("`audience` must be a non-empty string, a non-empty sequence of them, or None")
    return values
