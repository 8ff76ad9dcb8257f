"""An authorization server for the auth tests: keys made here, JWTs minted here, JWKS and introspection served.

`serve_auth_server()` runs a real uvicorn on 127.0.0.1 serving `GET /jwks` (the `jwks` document,
which a test may replace at any time) and `POST /introspect` (RFC 7662: HTTP Basic client
authentication really checked, answers from the `active` dict of token -> claims), and
counts the requests each endpoint received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import serve

ISSUER = "https://as.example.test"
AUDIENCE = "https://rs.example.test/mcp"
CLIENT_ID = "mcp-resource-server"
# Characters that RFC 6749 §2.3.1's form-encoding changes, so the test server's decoding is exercised.
CLIENT_SECRET = "s3cret+/= with space"


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA signing key (2048 bits: the smallest any real server uses)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 signing key, for ES256."""
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> str:
    """The PEM (SubjectPublicKeyInfo) of a private key's public half."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64int(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def public_jwk(key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    """The public JWK of an RSA or EC private key; `extra` adds or overrides members (`alg`, `use`, ...)."""
    numbers = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = {"kty": "RSA", "n": _b64int(numbers.n), "e": _b64int(numbers.e)}
    else:
        size = (key.curve.key_size + 7) // 8
        jwk = {
            "kty": "EC",
            "crv": {"secp256r1": "P-256", "secp384r1": "P-384"}[key.curve.name],
            "x": b64url(numbers.x.to_bytes(size, "big")),
            "y": b64url(numbers.y.to_bytes(size, "big")),
        }
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


def jwks(*keys: dict[str, Any]) -> dict[str, Any]:
    """A JWKS document holding these JWKs."""
    return {"keys": list(keys)}


def claims(exp_in: float = 300, **overrides: Any) -> dict[str, Any]:
    """A valid access token's claims (RFC 9068 shape); an override of None removes that claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "client_id": "client-1",
        "scope": "notes:read notes:write",
        "iat": now,
        "exp": now + int(exp_in),
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def mint(
    key: Any, *, kid: str | None = "k1", alg: str = "RS256", headers: dict[str, Any] | None = None, **overrides: Any
) -> str:
    """A JWT signed with `key` (a private key, or bytes for HS*), with `claims(**overrides)` as payload."""
    header = dict(headers or {})
    if kid is not None:
        header["kid"] = kid
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers=header)


def forge(header: dict[str, Any], payload: dict[str, Any], key: Any, alg: str = "RS256") -> str:
    """A JWS built by hand, whatever its header says (PyJWT's encoder refuses odd headers).

    `alg` picks how the signature is made, `header["alg"]` what the token claims; `key` is a
    private key, or bytes used as an HMAC secret.
    """
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    signature = algorithm.sign(signing_input.encode(), key if alg.startswith("HS") else algorithm.prepare_key(key))
    return f"{signing_input}.{b64url(signature)}"


def unsigned(kid: str | None = "k1", **overrides: Any) -> str:
    """An `alg: none` JWT with valid-looking claims and an empty signature."""
    header: dict[str, Any] = {"alg": "none", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid

    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims(**overrides)).encode())}."


class AuthServer:
    """What the test authorization server serves and what it saw; change the attributes at any time."""

    def __init__(self) -> None:
        self.url = ""
        self.jwks: dict[str, Any] = {"keys": []}
        # token -> the introspection answer for it (without "active"); unknown tokens are inactive.
        self.active: dict[str, dict[str, Any]] = {}
        self.jwks_requests = 0
        self.introspection_requests = 0
        # Seconds each answer waits before it is sent, to play a slow server.
        self.delay = 0.0
        # Set to play a broken server: the JWKS endpoint answers this status with an error body.
        self.jwks_status = 200
        # Send the JWKS chunked, without a Content-Length, so only reading it tells its size.
        self.jwks_chunked = False
        # Forms of the introspection requests, in order, as the server parsed them.
        self.forms: list[dict[str, str]] = []

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/jwks"

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/jwks", self._jwks), Route("/introspect", self._introspect, methods=["POST"])])

    async def _jwks(self, request: Request) -> Response:
        self.jwks_requests += 1
        await asyncio.sleep(self.delay)
        if self.jwks_status != 200:
            return JSONResponse({"error": "broken on purpose"}, status_code=self.jwks_status)
        if self.jwks_chunked:
            body = json.dumps(self.jwks).encode()
            chunks = (body[start : start + 256] for start in range(0, len(body), 256))
            return StreamingResponse(_iterate(chunks), media_type="application/json")
        return JSONResponse(self.jwks)

    async def _introspect(self, request: Request) -> Response:
        self.introspection_requests += 1
        await asyncio.sleep(self.delay)
        if not _client_authenticated(request.headers.get("authorization", "")):
            return JSONResponse({"error": "invalid_client"}, status_code=401, headers={"WWW-Authenticate": "Basic"})
        form = {name: values[0] for name, values in parse_qs((await request.body()).decode()).items()}
        self.forms.append(form)
        answer = self.active.get(form.get("token", ""))
        return JSONResponse({"active": False} if answer is None else {"active": True, **answer})


async def _iterate(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _client_authenticated(header: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return False
    return unquote_plus(user) == CLIENT_ID and unquote_plus(password) == CLIENT_SECRET


@contextlib.contextmanager
def serve_auth_server() -> Iterator[AuthServer]:
    """An `AuthServer` on a real uvicorn at 127.0.0.1 for the duration of the block."""
    server = AuthServer()
    with serve(server.app(), lifespan="off") as url:
        server.url = url
        yield server

