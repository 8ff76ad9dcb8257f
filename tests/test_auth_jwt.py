"""JWTVerifier against a real JWKS endpoint: what it accepts, what it refuses, and how it fetches keys."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from mcp_asgi.auth import AccessToken, JWTVerifier
from tests.auth_helpers import (
    AUDIENCE,
    ISSUER,
    AuthServer,
    b64url,
    claims,
    forge,
    jwks,
    mint,
    new_ec_key,
    new_rsa_key,
    public_jwk,
    public_pem,
    serve_auth_server,
    unsigned,
)
from tests.conftest import free_port

KEY = new_rsa_key()
OTHER = new_rsa_key()
EC_KEY = new_ec_key()


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    with serve_auth_server() as server:
        yield server


def verifier_for(server: AuthServer, **options: object) -> JWTVerifier:
    server.jwks = server.jwks if server.jwks["keys"] else jwks(public_jwk(KEY, "k1"))
    options.setdefault("issuer", ISSUER)
    options.setdefault("audience", AUDIENCE)
    return JWTVerifier(jwks_uri=server.jwks_uri, **options)  # type: ignore[arg-type]


def hs256_with_public_key_as_secret() -> str:
    """The algorithm-confusion token: HS256, its HMAC secret the server's public key (which anyone can read)."""
    return forge({"alg": "HS256", "kid": "k1"}, claims(), public_pem(KEY).encode(), alg="HS256")


async def test_a_valid_token_gives_every_field(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server)
    token = mint(KEY, aud=[AUDIENCE, "https://other.example.test"], sub="alice", client_id="client-1")
    access = await verifier(token)
    assert isinstance(access, AccessToken)
    payload = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert access.token == token
    assert access.client_id == "client-1"
    assert access.subject == "alice"
    assert access.scopes == frozenset({"notes:read", "notes:write"})
    assert access.expires_at == payload["exp"]
    assert access.audience == (AUDIENCE, "https://other.example.test")
    assert dict(access.claims) == payload
    assert access.identity == "client-1|alice"


async def test_scp_and_azp_are_read_when_scope_and_client_id_are_absent(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server)
    as_list = await verifier(mint(KEY, scope=None, scp=["a", "b"], client_id=None, azp="web-app"))
    assert as_list is not None and as_list.scopes == {"a", "b"} and as_list.client_id == "web-app"
    as_string = await verifier(mint(KEY, scope=None, scp="c d"))
    assert as_string is not None and as_string.scopes == {"c", "d"}
    bare = await verifier(mint(KEY, scope=None, client_id=None))
    assert bare is not None and bare.scopes == frozenset() and bare.client_id is None


def _refused_tokens() -> dict[str, str]:
    now = int(time.time())
    return {
        "expired": mint(KEY, exp_in=-120),
        "nbf in the future": mint(KEY, nbf=now + 600),
        "wrong issuer": mint(KEY, iss="https://evil.example.test"),
        "no issuer": mint(KEY, iss=None),
        "wrong audience": mint(KEY, aud="https://other.example.test"),
        "no audience": mint(KEY, aud=None),
        "no exp": mint(KEY, exp=None),
        "wrong key": mint(OTHER, kid="k1"),
        "alg none": unsigned(),
        "alg none without kid": unsigned(kid=None),
        "HS256 with the public key as secret": hs256_with_public_key_as_secret(),
        "RS512 not allowed": mint(KEY, alg="RS512"),
        "signature cut off": mint(KEY).rsplit(".", 1)[0] + ".",
        "payload tampered": (lambda t: f"{t[0]}.{b64url(json.dumps(claims(sub='root')).encode())}.{t[2]}")(
            mint(KEY).split(".")
        ),
        "header alg swapped after signing": forge({"alg": "RS512", "kid": "k1"}, claims(), KEY, alg="RS256"),
        "scope of the wrong type": mint(KEY, scope=5),
        "sub of the wrong type": mint(KEY, sub=7),
        "aud of the wrong type": mint(KEY, aud={"a": 1}),
        "empty": "",
        "one word": "garbage",
        "three dots of garbage": "a.b.c",
        "not base64": "@@@.###.$$$",
        "header not JSON": f"{b64url(b'not json')}.{b64url(b'{}')}.",
        "header a list": f"{b64url(b'[1]')}.{b64url(b'{}')}.",
        "payload a list": forge({"alg": "RS256", "kid": "k1"}, [1], KEY),  # type: ignore[arg-type]
        "kid a number": forge({"alg": "RS256", "kid": 5}, claims(), KEY),
        "huge": "a" * 100_000,
    }


async def test_bad_tokens_are_refused_without_raising(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server)
    assert await verifier(mint(KEY)) is not None  # the same verifier accepts a good token
    refused = {name: await verifier(token) for name, token in _refused_tokens().items()}
    assert {name for name, access in refused.items() if access is not None} == set()


async def test_leeway_allows_a_little_clock_skew(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server, leeway=30)
    assert await verifier(mint(KEY, exp_in=-10)) is not None
    assert await verifier(mint(KEY, nbf=int(time.time()) + 10)) is not None
    assert await verifier_for(auth_server, leeway=0)(mint(KEY, exp_in=-10)) is None


async def test_required_claims_can_be_relaxed(auth_server: AuthServer) -> None:
    token = mint(KEY, exp=None)
    assert await verifier_for(auth_server)(token) is None
    access = await verifier_for(auth_server, required_claims=())(token)
    assert access is not None and access.expires_at is None


async def test_the_reason_of_a_refusal_is_logged_at_debug(
    auth_server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = verifier_for(auth_server)
    with caplog.at_level(logging.DEBUG, logger="mcp_asgi"):
        assert await verifier(mint(KEY, exp_in=-120)) is None
        assert await verifier(unsigned()) is None
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.DEBUG]
    assert any("expired" in message for message in messages), messages
    assert any("alg 'none'" in message for message in messages), messages


async def test_without_audience_the_token_must_carry_aud_and_the_check_is_left_to_the_caller(
    auth_server: AuthServer,
) -> None:
    verifier = verifier_for(auth_server, audience=None)
    assert verifier.audience is None
    access = await verifier(mint(KEY, aud="https://anything.example.test"))
    assert access is not None and access.audience == ("https://anything.example.test",)
    assert await verifier(mint(KEY, aud=None)) is None
    assert await verifier(mint(KEY, aud=[])) is None
    assert verifier_for(auth_server, audience=["a", "b"]).audience == ("a", "b")
    assert verifier_for(auth_server, audience="a").audience == ("a",)


async def test_any_of_several_audiences_is_enough(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server, audience=["https://one.test", "https://two.test"])
    assert await verifier(mint(KEY, aud=["https://x.test", "https://two.test"])) is not None
    assert await verifier(mint(KEY, aud="https://three.test")) is None


async def test_a_rotated_key_is_accepted_on_the_first_try(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server)
    assert await verifier(mint(KEY, kid="k1")) is not None
    assert auth_server.jwks_requests == 1
    auth_server.jwks = jwks(public_jwk(KEY, "k1"), public_jwk(OTHER, "k2"))
    assert await verifier(mint(OTHER, kid="k2")) is not None
    assert auth_server.jwks_requests == 2
    # Known kids are served from the cache.
    assert await verifier(mint(OTHER, kid="k2")) is not None
    assert await verifier(mint(KEY, kid="k1")) is not None
    assert auth_server.jwks_requests == 2


async def test_a_flood_of_unknown_kids_fetches_at_most_once_per_interval(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server, min_refetch_interval=5)
    assert await verifier(mint(KEY)) is not None
    flood = [mint(OTHER, kid=uuid.uuid4().hex) for _ in range(30)]
    assert await asyncio.gather(*(verifier(token) for token in flood)) == [None] * 30
    for token in flood:
        assert await verifier(token) is None
    assert auth_server.jwks_requests == 2  # the warm-up, then one refetch for the whole flood


async def test_an_unknown_kid_refetches_again_after_the_interval(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server, min_refetch_interval=0.2)
    assert await verifier(mint(KEY)) is not None
    assert await verifier(mint(OTHER, kid="new-1")) is None
    assert auth_server.jwks_requests == 2
    await asyncio.sleep(0.3)
    auth_server.jwks = jwks(public_jwk(KEY, "k1"), public_jwk(OTHER, "new-2"))
    assert await verifier(mint(OTHER, kid="new-2")) is not None
    assert auth_server.jwks_requests == 3


async def test_concurrent_first_tokens_share_one_fetch(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server)
    auth_server.delay = 0.1
    results = await asyncio.gather(*(verifier(mint(KEY)) for _ in range(20)))
    assert all(result is not None for result in results)
    assert auth_server.jwks_requests == 1


async def test_the_cached_set_expires_after_its_ttl(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server, jwks_cache_ttl=0.1)
    assert await verifier(mint(KEY)) is not None
    await asyncio.sleep(0.2)
    auth_server.jwks = jwks(public_jwk(OTHER, "k2"))  # k1 withdrawn by the server
    assert await verifier(mint(KEY)) is None
    assert auth_server.jwks_requests == 2


async def test_a_token_without_kid_uses_the_only_key(auth_server: AuthServer) -> None:
    auth_server.jwks = jwks(public_jwk(KEY, None))
    assert await verifier_for(auth_server)(mint(KEY, kid=None)) is not None
    auth_server.jwks = jwks(public_jwk(KEY, "k1"), public_jwk(OTHER, "k2"))
    assert await verifier_for(auth_server)(mint(KEY, kid=None)) is None


async def test_keys_not_for_signing_or_of_other_types_are_ignored(auth_server: AuthServer) -> None:
    auth_server.jwks = jwks(
        "not an object",  # type: ignore[arg-type]
        {"kty": "RSA", "kid": "broken"},
        {"kty": "oct", "kid": "hs", "k": b64url(b"shared secret")},
        {"kty": "XYZ", "kid": "odd"},
        public_jwk(OTHER, "enc", use="enc"),
        public_jwk(KEY, "k1"),
    )
    verifier = verifier_for(auth_server, algorithms=("RS256", "ES256"))
    assert await verifier(mint(KEY)) is not None
    assert await verifier(mint(OTHER, kid="enc")) is None
    assert await verifier(mint(OTHER, kid="broken")) is None


async def test_a_declared_alg_narrows_what_a_key_checks(auth_server: AuthServer) -> None:
    auth_server.jwks = jwks(public_jwk(KEY, "k1", alg="RS512"))
    verifier = verifier_for(auth_server, algorithms=("RS256", "RS512"))
    assert await verifier(mint(KEY, alg="RS512")) is not None
    assert await verifier(mint(KEY, alg="RS256")) is None


async def test_ec_keys_check_es256_and_never_rsa_tokens(auth_server: AuthServer) -> None:
    auth_server.jwks = jwks(public_jwk(KEY, "rsa"), public_jwk(EC_KEY, "ec"))
    verifier = verifier_for(auth_server, algorithms=("RS256", "ES256"))
    assert await verifier(mint(EC_KEY, kid="ec", alg="ES256")) is not None
    assert await verifier(mint(KEY, kid="rsa")) is not None
    # A token naming one key's kid with the other family's alg finds no key to check it with.
    assert await verifier(mint(EC_KEY, kid="rsa", alg="ES256")) is None
    assert await verifier(mint(KEY, kid="ec")) is None


async def test_the_jwks_size_and_key_count_are_bounded(
    auth_server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    auth_server.jwks = jwks(*(public_jwk(new_ec_key(), f"k{index}") for index in range(4)), public_jwk(KEY, "last"))
    capped = verifier_for(auth_server, algorithms=("RS256", "ES256"), max_keys=2)
    assert await capped(mint(KEY, kid="last")) is None
    small = verifier_for(auth_server, max_jwks_bytes=500)
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"):
        assert await small(mint(KEY, kid="last")) is None
        auth_server.jwks_chunked = True  # no Content-Length: the cap counts the bytes read
        assert await verifier_for(auth_server, max_jwks_bytes=500)(mint(KEY, kid="last")) is None
    warnings = [record.getMessage() for record in caplog.records]
    assert any("bytes, more than the 500 allowed" in message for message in warnings), warnings
    assert any("answered more than the 500 bytes allowed" in message for message in warnings), warnings
    assert await verifier_for(auth_server)(mint(KEY, kid="last")) is not None


async def test_an_unreachable_jwks_refuses_quickly_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    verifier = JWTVerifier(jwks_uri=f"http://127.0.0.1:{free_port()}/jwks", issuer=ISSUER, audience=AUDIENCE)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"):
        assert await verifier(mint(KEY)) is None
    assert time.monotonic() - started < 3
    assert any("JWKS fetch" in record.getMessage() for record in caplog.records)


async def test_a_failing_jwks_keeps_the_keys_fetched_before(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server, jwks_cache_ttl=0.1, min_refetch_interval=0)
    assert await verifier(mint(KEY)) is not None
    auth_server.jwks_status = 500
    await asyncio.sleep(0.2)
    assert await verifier(mint(KEY)) is not None
    assert auth_server.jwks_requests == 2


async def test_a_failing_jwks_is_asked_at_most_once_per_interval(auth_server: AuthServer) -> None:
    auth_server.jwks_status = 503
    verifier = verifier_for(auth_server, min_refetch_interval=5)
    for _ in range(10):
        assert await verifier(mint(KEY)) is None
    assert auth_server.jwks_requests == 1


async def test_public_key_mode_needs_no_server() -> None:
    verifier = JWTVerifier(public_key=public_pem(KEY), issuer=ISSUER, audience=AUDIENCE)
    access = await verifier(mint(KEY, kid="whatever"))
    assert access is not None and access.subject == "alice"
    assert await verifier(mint(KEY, kid=None)) is not None
    assert await verifier(mint(OTHER)) is None
    assert await verifier(hs256_with_public_key_as_secret()) is None
    assert await verifier(unsigned()) is None
    ec_verifier = JWTVerifier(public_key=public_pem(EC_KEY).encode(), algorithms=["ES256"], audience=AUDIENCE)
    assert await ec_verifier(mint(EC_KEY, alg="ES256")) is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of"),
        ({"jwks_uri": "https://as.test/jwks", "public_key": "x"}, "exactly one of"),
        ({"jwks_uri": "ftp://as.test/jwks"}, "http(s)"),
        ({"jwks_uri": "https://as.test/jwks", "algorithms": ["HS256"]}, "public-key signature algorithms"),
        ({"jwks_uri": "https://as.test/jwks", "algorithms": ["none"]}, "public-key signature algorithms"),
        ({"jwks_uri": "https://as.test/jwks", "algorithms": []}, "at least one"),
        ({"public_key": "not a pem"}, "PEM public key"),
        ({"public_key": public_pem(KEY), "algorithms": ["ES256"]}, "checks none of `algorithms`"),
        ({"jwks_uri": "https://as.test/jwks", "audience": []}, "`audience`"),
        ({"jwks_uri": "https://as.test/jwks", "jwks_cache_ttl": 0}, "jwks_cache_ttl"),
    ],
)
def test_bad_configuration_is_refused_at_construction(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        JWTVerifier(**options)  # type: ignore[arg-type]


def test_importing_the_package_does_not_import_pyjwt() -> None:
    code = "import sys, mcp_asgi, mcp_asgi.auth; from mcp_asgi.auth import AccessToken; assert 'jwt' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_a_missing_pyjwt_is_named_with_the_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['jwt'] = None\n"
        "from mcp_asgi.auth import JWTVerifier\n"
        "try:\n    JWTVerifier(jwks_uri='https://as.test/jwks')\n"
        "except ImportError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=True, timeout=30, capture_output=True, text=True)
    assert "pip install 'mcp-asgi[jwt]'" in result.stdout


def test_one_verifier_serves_several_event_loops(auth_server: AuthServer) -> None:
    # A verifier built once at import time outlives the loop of its first request (tests, a
    # second asyncio.run): its HTTP client and its shared fetch must follow the running loop.
    verifier = verifier_for(auth_server, jwks_cache_ttl=0.05)
    assert asyncio.run(verifier(mint(KEY))) is not None
    time.sleep(0.1)
    assert asyncio.run(verifier(mint(KEY))) is not None
    assert auth_server.jwks_requests == 2
