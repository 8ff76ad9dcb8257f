from __future__ import annotations

from typing import Any

import httpx
import pytest

from mcp_asgi.asgi.security import HostOriginGuard
from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, MCPError
from mcp_asgi.transports.http_common import header_map, send_bytes, send_error
from tests.conftest import serve

LOCAL = {"type": "http", "scheme": "http", "server": ("127.0.0.1", 8000)}
PUBLIC = {"type": "http", "scheme": "https", "server": ("10.0.0.5", 443)}


def scope(server: Any = ("127.0.0.1", 8000), scheme: str = "http") -> dict[str, Any]:
    return {"type": "http", "scheme": scheme, "server": server}


def assert_forbidden(error: MCPError | None, *needles: str) -> None:
    assert error is not None, "the request should have been rejected"
    assert error.code == INVALID_REQUEST
    assert error.http_status == 403
    for needle in needles:
        assert needle in error.message


# Automatic mode: loopback servers only accept loopback names.


def test_conformance_rebinding_request_is_forbidden_on_localhost() -> None:
    error = HostOriginGuard().check(LOCAL, {"host": "evil.example.com", "origin": "http://evil.example.com"})
    assert_forbidden(error, "Host", "'evil.example.com'", "DNS rebinding", "localhost", "allowed_hosts=")


def test_evil_origin_alone_is_forbidden_on_localhost() -> None:
    error = HostOriginGuard().check(LOCAL, {"host": "127.0.0.1:8000", "origin": "http://evil.example.com"})
    assert_forbidden(error, "Origin", "'http://evil.example.com'", "DNS rebinding", "allowed_origins=")


def test_evil_host_without_origin_is_forbidden_on_localhost() -> None:
    assert_forbidden(HostOriginGuard().check(LOCAL, {"host": "evil.example.com:8000"}), "allowed_hosts=")


def test_null_origin_is_forbidden_on_localhost() -> None:
    assert_forbidden(HostOriginGuard().check(LOCAL, {"host": "localhost:8000", "origin": "null"}), "Origin")


def test_missing_host_is_forbidden_on_localhost() -> None:
    assert_forbidden(HostOriginGuard().check(LOCAL, {}), "no Host header")


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"},
        {"host": "127.0.0.1:8000"},
        {"host": "localhost"},
        {"host": "LOCALHOST:3000", "origin": "https://localhost:5173"},
        {"host": "[::1]:8000", "origin": "http://[::1]:8000"},
        {"host": "127.1.2.3"},
    ],
)
def test_loopback_names_pass_on_localhost(headers: dict[str, str]) -> None:
    assert HostOriginGuard().check(LOCAL, headers) is None


@pytest.mark.parametrize("server", [("127.0.0.1", 8000), ("127.5.5.5", 1), ("localhost", 80), ("::1", 8000)])
def test_every_loopback_bind_address_is_protected(server: tuple[str, int]) -> None:
    assert_forbidden(HostOriginGuard().check(scope(server), {"host": "evil.example.com"}), "evil.example.com")


@pytest.mark.parametrize("server", [("10.0.0.5", 443), ("0.0.0.0", 80), ("example.com", 80), None, ("/tmp/s", None)])
def test_non_loopback_servers_are_not_checked_by_default(server: Any) -> None:
    headers = {"host": "evil.example.com", "origin": "http://evil.example.com"}
    assert HostOriginGuard().check(scope(server), headers) is None


def test_loopback_decision_is_cached_per_server() -> None:
    guard = HostOriginGuard()
    guard.check(LOCAL, {"host": "localhost"})
    guard.check(PUBLIC, {"host": "example.com"})
    assert guard._loopback_servers == {("127.0.0.1", 8000): True, ("10.0.0.5", 443): False}


# Explicit lists.


def test_allowed_hosts_with_port_bare_and_wildcards() -> None:
    guard = HostOriginGuard(allowed_hosts=["api.example.com:8443", "Plain.Example.com", "*.corp.example", "dev:*"])
    assert guard.check(PUBLIC, {"host": "api.example.com:8443"}) is None
    assert guard.check(PUBLIC, {"host": "plain.example.com:1234"}) is None
    assert guard.check(PUBLIC, {"host": "a.b.corp.example"}) is None
    assert guard.check(PUBLIC, {"host": "dev:9999"}) is None
    assert_forbidden(guard.check(PUBLIC, {"host": "api.example.com:8444"}), "allowed_hosts")
    assert_forbidden(guard.check(PUBLIC, {"host": "corp.example"}), "allowed_hosts")
    assert_forbidden(guard.check(PUBLIC, {"host": "evil.example.com"}), "allowed_hosts")
    assert_forbidden(guard.check(PUBLIC, {}), "no Host header")


def test_explicit_hosts_are_enforced_on_any_server() -> None:
    guard = HostOriginGuard(allowed_hosts=["mcp.example.com"])
    assert guard.check(scope(None), {"host": "mcp.example.com"}) is None
    assert_forbidden(guard.check(scope(None), {"host": "localhost"}))


def test_explicit_hosts_replace_the_loopback_rule() -> None:
    # Behind a proxy on the same machine: the app binds 127.0.0.1 but serves a public name.
    guard = HostOriginGuard(allowed_hosts=["mcp.example.com"])
    assert guard.check(LOCAL, {"host": "mcp.example.com"}) is None


def test_host_without_port_uses_the_scheme_default() -> None:
    guard = HostOriginGuard(allowed_hosts=["mcp.example.com:443"])
    assert guard.check(scope(scheme="https"), {"host": "mcp.example.com"}) is None
    assert_forbidden(guard.check(scope(scheme="http"), {"host": "mcp.example.com"}), "mcp.example.com")


def test_star_allows_every_host_and_origin() -> None:
    guard = HostOriginGuard(allowed_hosts=["*"], allowed_origins=["*"])
    assert guard.check(LOCAL, {"host": "evil.example.com", "origin": "http://evil.example.com"}) is None
    assert HostOriginGuard(allowed_hosts=["*"]).check(LOCAL, {"host": "x", "origin": "http://y"}) is None


def test_origins_follow_allowed_hosts_when_not_listed() -> None:
    guard = HostOriginGuard(allowed_hosts=["app.example.com", "*.example.org:8443"])
    assert guard.check(PUBLIC, {"host": "app.example.com", "origin": "https://app.example.com"}) is None
    assert guard.check(PUBLIC, {"host": "app.example.com", "origin": "https://x.example.org:8443"}) is None
    assert_forbidden(
        guard.check(PUBLIC, {"host": "app.example.com", "origin": "https://x.example.org"}), "allowed_origins"
    )
    assert_forbidden(guard.check(PUBLIC, {"host": "app.example.com", "origin": "http://evil.example.com"}))


def test_allowed_origins_match_scheme_host_and_port() -> None:
    guard = HostOriginGuard(
        allowed_hosts=["*"],
        allowed_origins=["https://app.example.com", "http://localhost:*", "https://*.example.net:8443"],
    )
    ok = [
        "https://app.example.com",
        "https://APP.example.com:443",
        "http://localhost:5173",
        "https://a.example.net:8443",
    ]
    for origin in ok:
        assert guard.check(PUBLIC, {"host": "h", "origin": origin}) is None, origin
    bad = ["http://app.example.com", "https://app.example.com:8443", "https://localhost:5173", "null", "https://x"]
    for origin in bad:
        assert_forbidden(guard.check(PUBLIC, {"host": "h", "origin": origin}), "Origin")


def test_allowed_origins_alone_keep_the_automatic_host_rule() -> None:
    guard = HostOriginGuard(allowed_origins=["https://app.example.com"])
    assert guard.check(LOCAL, {"host": "localhost:8000", "origin": "https://app.example.com"}) is None
    assert_forbidden(guard.check(LOCAL, {"host": "evil.example.com"}), "Host")
    assert_forbidden(guard.check(PUBLIC, {"host": "x", "origin": "https://evil.example.com"}), "Origin")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"allowed_hosts": "localhost"}, "`allowed_hosts` must be a list"),
        ({"allowed_hosts": [""]}, "allowed_hosts"),
        ({"allowed_hosts": ["example.com:http"]}, "invalid port"),
        ({"allowed_origins": ["example.com"]}, "scheme://host"),
        ({"allowed_origins": ["https://example.com/path"]}, "no path"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        HostOriginGuard(**kwargs)


# Through a real uvicorn: its `scope["server"]` is what the automatic rule looks at.


async def test_guard_behind_uvicorn_on_127_0_0_1() -> None:
    guard = HostOriginGuard()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        error = guard.check(scope, header_map(scope))
        if error is not None:
            await send_error(send, error)
        else:
            await send_bytes(send, 200, b"{}")

    with serve(app, lifespan="off") as url:
        async with httpx.AsyncClient() as client:
            good = await client.post(url, headers={"origin": url})
            evil = await client.post(url, headers={"host": "evil.example.com", "origin": "http://evil.example.com"})
    assert good.status_code == 200
    assert evil.status_code == 403
    body = evil.json()
    assert body["error"]["code"] == -32600
    assert "id" not in body


def test_http_app_guards_both_transports_on_localhost():
    from tests.conftest import serve
    from tests.servers import build_server

    evil = {
        "host": "evil.example.com",
        "origin": "http://evil.example.com",
        "accept": "application/json, text/event-stream",
    }
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    with serve(build_server().http_app()) as base:
        refused = httpx.post(f"{base}/mcp", json=init, headers=evil)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == -32600
        assert httpx.post(f"{base}/mcp", json=init, headers={"accept": evil["accept"]}).status_code == 200
    with serve(build_server().http_app(allowed_hosts=["evil.example.com"])) as base:
        assert httpx.post(f"{base}/mcp", json=init, headers=evil).status_code == 200
    with serve(build_server().http_app(transport="sse")) as base:
        assert httpx.get(f"{base}/sse", headers=evil).status_code == 403
        assert httpx.post(f"{base}/messages/?session_id=x", json=init, headers=evil).status_code == 403
