"""Who a request comes from, as the host's auth layer set it: what sessions are bound to.

The principal is a plain string (or None for anonymous), computed in this one
place so that 2025 sessions, legacy SSE sessions and 2026-07-28 `requestState`
all agree on it:

- `scope["user"]` when it is authenticated (Starlette's `AuthenticationMiddleware`
  sets it): `"user:" + identity`, falling back to its `display_name`;
- else the `Authorization` header: `"authorization:" + SHA-256 hex digest` of it,
  so the credential itself is never stored;
- else None.

The prefixes keep the kinds apart: no user name can equal a digest. Imports nothing
from the package, so every layer (`protocol/` included) may use it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

USER_PREFIX = "user:"
AUTHORIZATION_PREFIX = "authorization:"


def principal_of(scope: Mapping[str, Any]) -> str | None:
    """The principal of the request in `scope`: its authenticated user, else its credential, else None."""
    user = _user_name(scope.get("user"))
    if user is not None:
        return USER_PREFIX + user
    credentials = [value for name, value in scope.get("headers", ()) if name.lower() == b"authorization"]
    if not credentials:
        return None
    # Several Authorization headers count as one credential: all of them, in order.
    digest = hashlib.sha256(b"\n".join(_normalized(value) for value in credentials)).hexdigest()
    return AUTHORIZATION_PREFIX + digest


def same_principal(expected: str | None, actual: str | None) -> bool:
    """Whether `actual` is the principal `expected`, in time that does not depend on where they differ."""
    if expected is None or actual is None:
        return expected is actual
    # compare_digest takes str only when it is ASCII; user identities need not be.
    return hmac.compare_digest(expected.encode("utf-8", "surrogatepass"), actual.encode("utf-8", "surrogatepass"))


def _user_name(user: Any) -> str | None:
    """The identity of an authenticated user object, else its display name; None if it has neither."""
    if user is None:
        return None
    # Starlette's BaseUser raises NotImplementedError for each property a subclass does not
    # define (a user class may define `display_name` only), so each one is read defensively.
    try:
        if not user.is_authenticated:
            return None
    except (AttributeError, NotImplementedError):
        return None
    for attribute in ("identity", "display_name"):
        try:
            value = getattr(user, attribute)
        except (AttributeError, NotImplementedError):
            continue
        if value is not None and value != "":
            return str(value)
    return None


def _normalized(value: bytes) -> bytes:
    # The scheme is case-insensitive (RFC 9110): "Bearer t" and "bearer t" are one credential.
    scheme, _, rest = value.strip().partition(b" ")
    return scheme.lower() + b" " + rest.strip()
