"""A repeated `Host` or `Origin` header is refused: each layer would otherwise read a different copy."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from mcp_asgi.asgi.security import HostOriginGuard
from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST
from mcp_asgi.transports.http_common import REPEATED_HEADERS, header_map
from tests.conftest import serve
from tests.http_helpers import client_for
from tests.servers import build_server

LOCAL = {"type": "http", "scheme": "http", "server": ("127.0.0.1", 8000)}
PUBLIC = {"type": "http", "scheme": "https", "server": ("10.0.0.5", 443)}


def raw_scope(*headers: tuple[str, str], server: Any = ("127.0.0.1", 8000)) -> dict[str, Any]:
    encoded = [(name.encode(), value.encode()) for name, value in headers]
    return {"type": "http", "scheme": "http", "server": server, "headers": encoded}


def test_header_map_notes_repeated_host_and_origin_only() -> None:
    plain = header_map(raw_scope(("host", "localhost"), ("accept", "a"), ("accept", "b")))
    assert plain == {"host": "localhost", "accept": "b"}
    both = header_map(
        raw_scope(("origin", "http://a"), ("host", "x"), ("host", "y"), ("origin", "http://b"), ("origin", "http://c"))
    )
    assert both[REPEATED_HEADERS] == "host, origin"
    assert header_map(raw_scope(("host", "a"), ("host", "a")))[REPEATED_HEADERS] == "host"


def test_header_map_accepts_headers_given_as_any_iterable() -> None:
    scope = raw_scope(("origin", "http://a"), ("origin", "http://b"))
    scope["headers"] = iter(scope["headers"])
    assert header_map(scope)[REPEATED_HEADERS] == "origin"


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ((("host", "localhost:8000"), ("host", "evil.example.com")), "more than one Host header"),
        ((("host", "localhost"), ("origin", "http://localhost"), ("origin", "https://evil.example")), "one Origin"),
        ((("host", "a"), ("host", "b"), ("origin", "http://a"), ("origin", "http://b")), "Host and Origin"),
    ],
)
@pytest.mark.parametrize("where", [LOCAL, PUBLIC])
def test_guard_refuses_repeats_with_400_naming_the_header(headers: Any, named: str, where: Any) -> None:
    scope = raw_scope(*headers, server=where["server"])
    # Even with every host and origin allowed: the repeat itself is the problem.
    for guard in (HostOriginGuard(), HostOriginGuard(["*"], ["*"])):
        error = guard.check(scope, header_map(scope))
        assert error is not None
        assert (error.code, error.http_status) == (INVALID_REQUEST, 400)
        assert named in error.message


def test_a_single_host_and_origin_still_pass() -> None:
    scope = raw_scope(("host", "localhost:8000"), ("origin", "http://localhost:5173"), ("accept", "a"), ("accept", "b"))
    assert HostOriginGuard().check(scope, header_map(scope)) is None


def http_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < content_length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


BODY = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}'


def post(extra_headers: bytes) -> bytes:
    return (
        b"POST /mcp HTTP/1.1\r\n"
        + extra_headers
        + b"Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        + b"Connection: close\r\nContent-Length: "
        + str(len(BODY)).encode()
        + b"\r\n\r\n"
        + BODY
    )


def test_endpoint_behind_uvicorn_refuses_a_repeated_origin() -> None:
    with serve(build_server().http_app()) as base:
        port = int(base.rsplit(":", 1)[1])
        origins = b"Origin: http://127.0.0.1\r\nOrigin: http://evil.example.com\r\n"
        status, body = http_exchange(port, post(b"Host: 127.0.0.1\r\n" + origins))
        assert status == 400
        assert json.loads(body)["error"]["code"] == INVALID_REQUEST
        assert "more than one Origin header" in json.loads(body)["error"]["message"]
        ok, _ = http_exchange(port, post(b"Host: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"))
        assert ok == 200


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_both_transports_refuse_a_repeated_host(transport: str) -> None:
    # uvicorn's h11 parser already refuses a repeated Host, other servers (HTTP/2 ones, httptools)
    # pass it on: the app is driven directly, as such a server would.
    app = build_server().http_app(transport=transport)
    headers = [("host", "127.0.0.1"), ("host", "evil.example.com"), ("accept", "application/json, text/event-stream")]
    async with client_for(app) as client:
        if transport == "http":
            response = await client.post("/mcp", content=BODY, headers=[*headers, ("content-type", "application/json")])
        else:
            response = await client.get("/sse", headers=headers)
    assert response.status_code == 400
    assert "more than one Host header" in response.json()["error"]["message"]
