"""IntrospectionVerifier against a real RFC 7662 endpoint: answers, client authentication, caching, failures."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mcp_asgi.auth import AccessToken, IntrospectionVerifier
from tests.auth_helpers import AUDIENCE, CLIENT_ID, CLIENT_SECRET, AuthServer, serve_auth_server
from tests.conftest import free_port


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    with serve_auth_server() as server:
        yield server


def verifier_for(server: AuthServer, **options: Any) -> IntrospectionVerifier:
    options.setdefault("client_secret", CLIENT_SECRET)
    return IntrospectionVerifier(server.introspection_url, CLIENT_ID, **options)


def answer(exp_in: float = 300, **overrides: Any) -> dict[str, Any]:
    """What the server says about an active token (an override of None leaves the member out)."""
    base = {
        "scope": "notes:read notes:write",
        "client_id": "client-1",
        "sub": "alice",
        "exp": int(time.time() + exp_in),
        "aud": AUDIENCE,
        "iss": "https://as.example.test",
        "token_type": "Bearer",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


async def test_an_active_token_gives_every_field(auth_server: AuthServer) -> None:
    auth_server.active["opaque-1"] = answer(aud=[AUDIENCE, "https://other.test"])
    access = await verifier_for(auth_server)("opaque-1")
    assert isinstance(access, AccessToken)
    assert access.token == "opaque-1"
    assert access.client_id == "client-1"
    assert access.subject == "alice"
    assert access.scopes == frozenset({"notes:read", "notes:write"})
    assert access.expires_at == auth_server.active["opaque-1"]["exp"]
    assert access.audience == (AUDIENCE, "https://other.test")
    assert access.claims["active"] is True and access.claims["iss"] == "https://as.example.test"
    # RFC 7662 §2.1: the token and its type hint, form-encoded (the server authenticated us first).
    assert auth_server.forms == [{"token": "opaque-1", "token_type_hint": "access_token"}]


async def test_inactive_unknown_and_expired_tokens_are_refused(auth_server: AuthServer) -> None:
    auth_server.active["expired"] = answer(exp_in=-5)
    verifier = verifier_for(auth_server)
    assert await verifier("unknown") is None
    assert await verifier("expired") is None
    auth_server.active["fine"] = answer()
    assert await verifier("fine") is not None


async def test_malformed_answers_are_refused(auth_server: AuthServer) -> None:
    auth_server.active["bad-scope"] = answer(scope=["a"])
    auth_server.active["bad-sub"] = answer(sub=5)
    auth_server.active["bad-exp"] = answer(exp="tomorrow")
    auth_server.active["bad-aud"] = answer(aud=7)
    verifier = verifier_for(auth_server)
    for token in ("bad-scope", "bad-sub", "bad-exp", "bad-aud"):
        assert await verifier(token) is None, token


async def test_empty_and_oversized_tokens_are_refused_without_asking(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server)
    assert await verifier("") is None
    assert await verifier("a" * 100_000) is None
    assert auth_server.introspection_requests == 0


async def test_a_wrong_client_secret_is_refused_by_the_server(
    auth_server: AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    auth_server.active["opaque-1"] = answer()
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"):
        assert await verifier_for(auth_server, client_secret="wrong")("opaque-1") is None
    assert auth_server.introspection_requests == 1 and auth_server.forms == []
    assert any("HTTP 401" in record.getMessage() for record in caplog.records)


async def test_an_active_answer_is_cached(auth_server: AuthServer) -> None:
    auth_server.active["opaque-1"] = answer()
    auth_server.active["opaque-2"] = answer(sub="bob")
    verifier = verifier_for(auth_server)
    first = await verifier("opaque-1")
    assert first is not None and await verifier("opaque-1") == first
    assert auth_server.introspection_requests == 1
    second = await verifier("opaque-2")
    assert second is not None and second.subject == "bob"
    assert auth_server.introspection_requests == 2
    # Keyed by the token's SHA-256, not the token.
    assert all(isinstance(key, bytes) and len(key) == 32 for key in verifier._cache)


async def test_the_cache_entry_lives_cache_ttl_at_most(auth_server: AuthServer) -> None:
    auth_server.active["opaque-1"] = answer()
    verifier = verifier_for(auth_server, cache_ttl=0.2)
    assert await verifier("opaque-1") is not None
    await asyncio.sleep(0.3)
    del auth_server.active["opaque-1"]  # revoked meanwhile
    assert await verifier("opaque-1") is None
    assert auth_server.introspection_requests == 2


async def test_the_cache_entry_ends_at_the_token_exp(auth_server: AuthServer) -> None:
    exp = int(time.time()) + 2  # whole seconds: +1 could be 0.01 s away
    auth_server.active["opaque-1"] = answer(exp=exp)
    verifier = verifier_for(auth_server, cache_ttl=60)
    assert await verifier("opaque-1") is not None
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.05)
    assert await verifier("opaque-1") is None  # asked again, and the server's exp has passed
    assert auth_server.introspection_requests == 2


async def test_a_refused_token_is_cached_briefly(auth_server: AuthServer) -> None:
    verifier = verifier_for(auth_server, negative_cache_ttl=0.3)
    for _ in range(20):
        assert await verifier("bad-token") is None
    assert auth_server.introspection_requests == 1
    await asyncio.sleep(0.4)
    auth_server.active["bad-token"] = answer()
    assert await verifier("bad-token") is not None
    assert auth_server.introspection_requests == 2


async def test_concurrent_checks_of_one_token_share_one_request(auth_server: AuthServer) -> None:
    auth_server.active["opaque-1"] = answer()
    auth_server.delay = 0.1
    verifier = verifier_for(auth_server)
    results = await asyncio.gather(*(verifier("opaque-1") for _ in range(20)))
    assert all(result is not None for result in results)
    assert auth_server.introspection_requests == 1


async def test_the_cache_is_bounded_and_evicts_the_oldest(auth_server: AuthServer) -> None:
    for index in range(5):
        auth_server.active[f"t{index}"] = answer()
    verifier = verifier_for(auth_server, cache_size=3)
    for index in range(5):
        assert await verifier(f"t{index}") is not None
    assert len(verifier._cache) == 3
    assert await verifier("t4") is not None  # still cached
    assert auth_server.introspection_requests == 5
    assert await verifier("t0") is not None  # evicted: asked again
    assert auth_server.introspection_requests == 6


async def test_an_unreachable_server_refuses_quickly_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    verifier = IntrospectionVerifier(f"http://127.0.0.1:{free_port()}/introspect", CLIENT_ID, CLIENT_SECRET)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mcp_asgi"):
        assert await verifier("opaque-1") is None
    assert time.monotonic() - started < 3
    assert any("introspection failed" in record.getMessage() for record in caplog.records)


async def test_a_slow_server_times_out_and_the_failure_is_not_cached(auth_server: AuthServer) -> None:
    auth_server.active["opaque-1"] = answer()
    auth_server.delay = 1.0
    verifier = verifier_for(auth_server, timeout=0.2)
    started = time.monotonic()
    assert await verifier("opaque-1") is None
    assert time.monotonic() - started < 0.9
    auth_server.delay = 0.0
    assert await verifier("opaque-1") is not None


async def test_an_answer_without_a_boolean_active_is_refused_and_not_cached(auth_server: AuthServer) -> None:
    auth_server.active["opaque-1"] = answer(active="true")  # a string: the server is broken
    verifier = verifier_for(auth_server)
    assert await verifier("opaque-1") is None
    auth_server.active["opaque-1"] = answer()
    assert await verifier("opaque-1") is not None
    assert auth_server.introspection_requests == 2


async def test_audience_given_must_be_in_the_answer(auth_server: AuthServer) -> None:
    auth_server.active["ours"] = answer(aud=["https://x.test", AUDIENCE])
    auth_server.active["theirs"] = answer(aud="https://other.test")
    auth_server.active["none"] = answer(aud=None)
    verifier = verifier_for(auth_server, audience=AUDIENCE)
    assert verifier.audience == (AUDIENCE,)
    assert await verifier("ours") is not None
    assert await verifier("theirs") is None
    assert await verifier("none") is None


async def test_without_audience_the_answer_aud_is_passed_on(auth_server: AuthServer) -> None:
    auth_server.active["theirs"] = answer(aud="https://other.test")
    auth_server.active["none"] = answer(aud=None)
    verifier = verifier_for(auth_server)
    assert verifier.audience is None
    theirs = await verifier("theirs")
    assert theirs is not None and theirs.audience == ("https://other.test",)
    none = await verifier("none")
    assert none is not None and none.audience == ()


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("ftp://as.test/introspect", "id", "secret"), {}, "http(s)"),
        (("https://as.test/introspect", "", "secret"), {}, "client_id"),
        (("https://as.test/introspect", "id", "secret"), {"cache_ttl": -1}, "cache_ttl"),
        (("https://as.test/introspect", "id", "secret"), {"timeout": 0}, "timeout"),
        (("https://as.test/introspect", "id", "secret"), {"audience": ""}, "audience"),
    ],
)
def test_bad_configuration_is_refused_at_construction(
    args: tuple[str, str, str], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        IntrospectionVerifier(*args, **options)
