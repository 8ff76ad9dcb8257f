"""JWT access tokens checked locally against the authorization server's public keys (PyJWT).

PyJWT (the `jwt` extra: `pip install 'mcp-asgi[jwt]'`) is imported when a `JWTVerifier` is
built, never by `import mcp_asgi` or `import mcp_asgi.auth`. The JWKS document is fetched
here over httpx (PyJWT's own `PyJWKClient` fetches synchronously, which would block the loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from mcp_asgi.auth.claims import MalformedClaim, access_token, audience_matches, normalized_audience
from mcp_asgi.auth.fetch import FetchError, JSONFetcher, SharedFlight
from mcp_asgi.auth.tokens import AccessToken

logger = logging.getLogger("mcp_asgi")

# The signature algorithms a public key can check, by the key type that checks them. HS* (a shared
# secret) and "none" are left out on purpose: with a public key as the "secret", HS256 would let
# anyone who has read the JWKS mint tokens (the classic algorithm-confusion attack).
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512", "secp256k1": "ES256K"}
_ASYMMETRIC = frozenset((*_RSA, *_EC_BY_CURVE.values(), "EdDSA"))
# Larger than any token an authorization server mints; refused before any parsing.
_MAX_TOKEN_CHARS = 16_384


def import_jwt() -> Any:
    """PyJWT with its cryptography backend, imported on first use; a clear ImportError when missing."""
    try:
        import jwt
        from jwt.algorithms import has_crypto
    except ImportError as exc:
        raise ImportError("JWTVerifier needs PyJWT: pip install 'mcp-asgi[jwt]'") from exc
    if not has_crypto:
        raise ImportError("JWTVerifier needs PyJWT with cryptography: pip install 'mcp-asgi[jwt]'")
    return jwt


@dataclass(frozen=True)
class _Key:
    """A usable signing key: its `kid`, the token algorithms it may check, and the cryptography key."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any


class JWTVerifier:
    """Accepts JWT access tokens signed by the authorization server, for `BearerAuth`.

    Give exactly one of `jwks_uri` (the server's JWKS document, fetched over HTTP, cached for
    `jwks_cache_ttl` seconds, fetched again at once when a token names a `kid` it does not hold,
    at most once every `min_refetch_interval` seconds, so keys rotate without a restart) or
    `public_key` (one PEM public key or certificate). A token is accepted only when its signature
    checks with a key of the right type for one of `algorithms`, `exp` and `nbf` hold (with
    `leeway` seconds of clock skew), `iss` equals `issuer` (when given), and every claim in
    `required_claims` is present (RFC 9068 access tokens always carry `exp`).

    Audience: with `audience=` (a string or several), the token's `aud` must name one of them.
    With `audience=None` the token must still carry an `aud` claim (a token minted for no
    resource is refused), and matching it against the endpoint's own resource URL is left to
    `BearerAuth`, which reads `AccessToken.audience`; `BearerAuth` knows the verifier did not
    check because the public `audience` attribute is None.

    Calling it never raises for a bad token: it returns None and logs why at debug level on
    the `mcp_asgi` logger. A JWKS that cannot be fetched refuses the tokens it would have
    checked (a warning is logged) while keys fetched earlier keep being used.
    """

    def __init__(
        self,
        *,
        jwks_uri: str | None = None,
        public_key: str | bytes | None = None,
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        algorithms: Sequence[str] = ("RS256",),
        leeway: float = 30.0,
        required_claims: Sequence[str] = ("exp",),
        jwks_cache_ttl: float = 300.0,
        min_refetch_interval: float = 5.0,
        timeout: float = 5.0,
        max_keys: int = 100,
        max_jwks_bytes: int = 1_048_576,
    ) -> None:
        if (jwks_uri is None) == (public_key is None):
            raise ValueError(
                "JWTVerifier needs exactly one of `jwks_uri` (the authorization server's key set, fetched "
                "over HTTP) or `public_key` (one PEM public key)"
            )
        self._jwt = import_jwt()
        self.algorithms = _checked_algorithms(algorithms, self._jwt)
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ValueError("`issuer` must be a non-empty string or None")
        for name, value in (("leeway", leeway), ("min_refetch_interval", min_refetch_interval)):
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0, not {value!r}")
        for name, value in (("jwks_cache_ttl", jwks_cache_ttl), ("timeout", timeout)):
            if value <= 0:
                raise ValueError(f"`{name}` must be > 0, not {value!r}")
        if max_keys < 1 or max_jwks_bytes < 1:
            raise ValueError("`max_keys` and `max_jwks_bytes` must be >= 1")
        self.jwks_uri = jwks_uri
        self.issuer = issuer
        self.audience = normalized_audience(audience)
        self.leeway = float(leeway)
        self.required_claims = tuple(required_claims)
        self.jwks_cache_ttl = float(jwks_cache_ttl)
        self.min_refetch_interval = float(min_refetch_interval)
        self.max_keys = max_keys
        self._public: _Key | None = None
        if public_key is not None:
            self._public = self._pem_key(public_key)
        elif httpx.URL(jwks_uri).scheme not in ("http", "https"):
            raise ValueError(f"`jwks_uri` must be an http(s) URL, not {jwks_uri!r}")
        self._fetcher = JSONFetcher(timeout=timeout, max_bytes=max_jwks_bytes)
        self._flight: SharedFlight[None] = SharedFlight()
        self._keys: dict[str | None, list[_Key]] = {}
        self._key_count = 0
        # Monotonic times: the last good fetch (for the TTL), the last failed one and the last
        # fetch an unknown kid caused (each allows another only `min_refetch_interval` later).
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._kid_fetched_at: float | None = None

    async def __call__(self, token: str) -> AccessToken | None:
        """The `AccessToken` for a valid JWT, or None (the reason is logged at debug level)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            return _refuse("empty, oversized or not a string")
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError) as error:
            return _refuse(f"malformed ({error})")
        alg = header.get("alg")
        if alg not in self.algorithms:
            return _refuse(f"alg {alg!r} is not one of {', '.join(self.algorithms)}")
        kid = header.get("kid")
        if not isinstance(kid, (str, type(None))):
            return _refuse(f"kid is a {type(kid).__name__}, not a string")
        key = self._public if self._public is not None else await self._jwks_key(kid, alg)
        if key is None or alg not in key.algorithms:
            return _refuse(f"no key for kid {kid!r} and alg {alg!r}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                issuer=self.issuer,
                leeway=self.leeway,
                # The audience is checked below, the same way for every verifier.
                options={"verify_aud": False, "require": list(self.required_claims)},
            )
            access = access_token(token, claims)
        except (jwt.PyJWTError, MalformedClaim, ValueError, TypeError) as error:
            return _refuse(f"{type(error).__name__}: {error}")
        if not access.audience:
            return _refuse("no aud claim")
        if self.audience is not None and not audience_matches(access.audience, self.audience):
            return _refuse(f"aud {list(access.audience)} names none of {list(self.audience)}")
        return access

    async def aclose(self) -> None:
        """Close the HTTP client used for the JWKS (a later token opens a new one)."""
        await self._fetcher.aclose()

    # --- keys -----------------------------------------------------------------------------------

    def _pem_key(self, pem: str | bytes) -> _Key:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        data = pem.encode() if isinstance(pem, str) else pem
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                key = x509.load_pem_x509_certificate(data).public_key()
            else:
                key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(
                "`public_key` must be a PEM public key (-----BEGIN PUBLIC KEY-----) or certificate"
            ) from exc
        algorithms = _algorithms_for(key) & set(self.algorithms)
        if not algorithms:
            raise ValueError(
                f"`public_key` is a {type(key).__name__}, which checks none of `algorithms` "
                f"({', '.join(self.algorithms)})"
            )
        return _Key(None, frozenset(algorithms), key)

    async def _jwks_key(self, kid: Any, alg: str) -> _Key | None:
        fetched = False
        if self._flight.running("jwks") or (self._stale() and self._may_fetch()):
            await self._flight.run("jwks", self._refresh)
            fetched = True
        key = self._lookup(kid, alg)
        # A kid never seen is the sign of a rotation: fetch again at once, unless this call just
        # fetched, or an unknown kid already caused a fetch within the interval (a flood of random
        # kids costs the authorization server one request per interval).
        if key is None and kid is not None and kid not in self._keys and not fetched:
            now = time.monotonic()
            recent = self._kid_fetched_at is not None and now - self._kid_fetched_at < self.min_refetch_interval
            if not recent and self._may_fetch():
                self._kid_fetched_at = now
                await self._flight.run("jwks", self._refresh)
                key = self._lookup(kid, alg)
        return key

    def _stale(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.jwks_cache_ttl

    def _may_fetch(self) -> bool:
        # After a failure, wait the interval before asking again: a JWKS endpoint that is down is
        # not hammered by every request that arrives meanwhile.
        return self._failed_at is None or time.monotonic() - self._failed_at >= self.min_refetch_interval

    def _lookup(self, kid: Any, alg: str) -> _Key | None:
        if kid is None:
            # A token naming no key is checked only against a key set of exactly one key.
            if self._key_count != 1:
                return None
            candidates = next(iter(self._keys.values()))
        else:
            candidates = self._keys.get(kid, [])
        return next((key for key in candidates if alg in key.algorithms), None)

    async def _refresh(self) -> None:
        assert self.jwks_uri is not None
        try:
            document = await self._fetcher.json("GET", self.jwks_uri)
            keys = self._parse_jwks(document)
        except FetchError as error:
            self._failed_at = time.monotonic()
            held = f"keeping the {self._key_count} keys fetched before" if self._fetched_at else "no keys yet"
            logger.warning("JWKS fetch from %s failed (%s); %s", self.jwks_uri, error, held)
            return
        self._keys = keys
        self._key_count = sum(len(found) for found in keys.values())
        self._fetched_at = time.monotonic()
        self._failed_at = None
        logger.debug("JWKS from %s: %d usable keys", self.jwks_uri, self._key_count)

    def _parse_jwks(self, document: Any) -> dict[str | None, list[_Key]]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise FetchError(f"{self.jwks_uri} did not answer a JWKS document (an object with a 'keys' list)")
        keys: dict[str | None, list[_Key]] = {}
        kept = 0
        for entry in document["keys"]:
            if kept == self.max_keys:
                logger.warning("JWKS from %s holds more than %d keys; the rest are ignored", self.jwks_uri, kept)
                break
            key = self._jwk_key(entry)
            if key is not None:
                keys.setdefault(key.kid, []).append(key)
                kept += 1
        return keys

    def _jwk_key(self, entry: Any) -> _Key | None:
        """The signing key a JWKS entry describes, or None for one not for signing or of a type we do not check."""
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            return None
        kid = entry.get("kid")
        if entry.get("kty") not in ("RSA", "EC", "OKP") or not isinstance(kid, (str, type(None))):
            return None
        try:
            # Built from the key material alone: the key's type (and curve) decides what it may
            # check; a declared `alg` only narrows that, below.
            key = self._jwt.PyJWK({name: value for name, value in entry.items() if name != "alg"}).key
        except (self._jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
            logger.debug("JWKS key %r ignored: %s", kid, error)
            return None
        if hasattr(key, "public_key"):  # a private JWK published by mistake: use its public half
            key = key.public_key()
        algorithms = _algorithms_for(key) & set(self.algorithms)
        declared = entry.get("alg")
        if declared is not None:
            algorithms &= {declared}
        return _Key(kid, frozenset(algorithms), key) if algorithms else None


def _checked_algorithms(algorithms: Sequence[str], jwt: Any) -> tuple[str, ...]:
    chosen = (algorithms,) if isinstance(algorithms, str) else tuple(algorithms)
    if not chosen:
        raise ValueError("`algorithms` must name at least one signature algorithm, e.g. ('RS256',)")
    wrong = [name for name in chosen if name not in _ASYMMETRIC]
    if wrong:
        raise ValueError(
            f"`algorithms` may hold only public-key signature algorithms (RS*, PS*, ES*, EdDSA), not {wrong}: "
            "a JWKS or public key cannot check HS* tokens, and 'none' tokens are never accepted"
        )
    known = jwt.algorithms.get_default_algorithms()
    missing = [name for name in chosen if name not in known]
    if missing:
        raise ValueError(f"the installed PyJWT does not support {missing}")
    return chosen


def _algorithms_for(key: Any) -> set[str]:
    """The token algorithms a cryptography public key can check (an RSA key never checks ES256, ...)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return set(_RSA)
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_BY_CURVE.get(key.curve.name)
        return {alg} if alg else set()
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return {"EdDSA"}
    return set()


def _refuse(reason: str) -> None:
    logger.debug("JWT refused: %s", reason)
    return None
