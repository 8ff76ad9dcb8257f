"""Opaque access tokens checked by asking the authorization server (RFC 7662 token introspection)."""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote_plus

import httpx

from mcp_asgi.auth.claims import MalformedClaim, access_token, audience_matches, normalized_audience
from mcp_asgi.auth.fetch import FetchError, JSONFetcher, SharedFlight
from mcp_asgi.auth.tokens import AccessToken

logger = logging.getLogger("mcp_asgi")

# Larger than any token an authorization server mints; refused without asking it.
_MAX_TOKEN_CHARS = 16_384
_MISS = object()


class IntrospectionVerifier:
    """Accepts the tokens the authorization server's introspection endpoint calls active, for `BearerAuth`.

    Each token is POSTed to `url` (`token=...&token_type_hint=access_token`) with HTTP Basic
    client authentication (`client_id`/`client_secret`, form-encoded first as RFC 6749 §2.3.1
    says). Only a 200 JSON answer with `"active": true` and an `exp` (when present) still in the
    future is accepted; `scope`, `client_id`, `sub`, `exp` and `aud` fill the `AccessToken`.

    Answers are cached by the token's SHA-256 (never the token itself as the key): an active
    token for `cache_ttl` seconds or until its `exp`, whichever comes first; a refused one for
    `negative_cache_ttl` seconds, so a flood of the same bad token costs the server one request.
    At most `cache_size` answers are kept (the oldest go first); concurrent checks of the same
    token share one request. A server that is down, slow (past `timeout`) or answers garbage
    refuses the token without caching that, and logs a warning.

    Audience: with `audience=` the answer's `aud` must name one of them (an answer without
    `aud` is refused). With `audience=None` the answer's `aud`, if any, is passed on in
    `AccessToken.audience` for `BearerAuth` to match against the endpoint's resource URL.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        audience: str | Sequence[str] | None = None,
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
        cache_size: int = 10_000,
        timeout: float = 5.0,
        max_response_bytes: int = 65_536,
    ) -> None:
        if httpx.URL(url).scheme not in ("http", "https"):
            raise ValueError(f"`url` must be the introspection endpoint's http(s) URL, not {url!r}")
        if not isinstance(client_id, str) or not client_id or not isinstance(client_secret, str):
            raise ValueError("`client_id` must be a non-empty string and `client_secret` a string")
        for name, value in (("cache_ttl", cache_ttl), ("negative_cache_ttl", negative_cache_ttl)):
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0 (0 turns that caching off), not {value!r}")
        if timeout <= 0 or cache_size < 0 or max_response_bytes < 1:
            raise ValueError("`timeout` must be > 0, `cache_size` >= 0 and `max_response_bytes` >= 1")
        self.url = url
        self.client_id = client_id
        self.audience = normalized_audience(audience)
        self.cache_ttl = float(cache_ttl)
        self.negative_cache_ttl = float(negative_cache_ttl)
        self.cache_size = cache_size
        credentials = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._fetcher = JSONFetcher(timeout=timeout, max_bytes=max_response_bytes)
        self._flight: SharedFlight[AccessToken | None] = SharedFlight()
        # SHA-256 of the token -> (monotonic deadline, the answer).
        self._cache: OrderedDict[bytes, tuple[float, AccessToken | None]] = OrderedDict()

    async def __call__(self, token: str) -> AccessToken | None:
        """The `AccessToken` for an active token, or None (the reason is logged)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            logger.debug("introspection: token refused: empty, oversized or not a string")
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        cached = self._cached(digest)
        if cached is not _MISS:
            return cached  # type: ignore[return-value]
        return await self._flight.run(digest, lambda: self._introspect(token, digest))

    async def aclose(self) -> None:
        """Close the HTTP client (a later token opens a new one)."""
        await self._fetcher.aclose()

    async def _introspect(self, token: str, digest: bytes) -> AccessToken | None:
        try:
            answer = await self._fetcher.json(
                "POST",
                self.url,
                data={"token": token, "token_type_hint": "access_token"},
                headers={"Authorization": self._authorization},
            )
            if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
                raise FetchError(f"{self.url} did not answer an object with a boolean 'active'")
        except FetchError as error:
            logger.warning("token introspection failed (%s); the token is refused", error)
            return None
        access, lifetime = self._judge(token, answer)
        self._remember(digest, access, lifetime)
        return access

    def _judge(self, token: str, answer: dict[str, Any]) -> tuple[AccessToken | None, float]:
        """What the answer grants, and how long that may be cached."""
        if answer["active"] is not True:
            return _refused("inactive", self.negative_cache_ttl)
        try:
            access = access_token(token, answer)
        except MalformedClaim as error:
            return _refused(str(error), self.negative_cache_ttl)
        now = time.time()
        if access.expires_at is not None and access.expires_at <= now:
            return _refused("active but its exp has passed", self.negative_cache_ttl)
        if self.audience is not None and not audience_matches(access.audience, self.audience):
            return _refused(f"aud {list(access.audience)} names none of {list(self.audience)}", self.negative_cache_ttl)
        lifetime = self.cache_ttl
        if access.expires_at is not None:
            lifetime = min(lifetime, access.expires_at - now)
        return access, lifetime

    def _cached(self, digest: bytes) -> object:
        entry = self._cache.get(digest)
        if entry is None:
            return _MISS
        deadline, access = entry
        if deadline <= time.monotonic():
            del self._cache[digest]
            return _MISS
        return access

    def _remember(self, digest: bytes, access: AccessToken | None, lifetime: float) -> None:
        if lifetime <= 0 or self.cache_size == 0:
            return
        self._cache[digest] = (time.monotonic() + lifetime, access)
        self._cache.move_to_end(digest)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def _refused(reason: str, lifetime: float) -> tuple[None, float]:
    logger.debug("introspection: token refused: %s", reason)
    return None, lifetime
