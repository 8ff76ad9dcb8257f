"""Hostile input gets a clear error and the server keeps serving: never a 500, never a dead process.

One test per input that used to break something (issue 8, "HTTP 500 on hostile input"),
each checking the exact status and JSON-RPC code and then a normal call on the same server.
"""

from __future__ import annotations

import io
import json
import os
import random
import socket
import time
from typing import Any

import anyio
import pytest

from mcp_asgi.asgi.security import HostOriginGuard
from mcp_asgi.protocol.jsonrpc import MAX_JSON_DEPTH, MCPError, decode, encode
from mcp_asgi.protocol.pending import PendingRequests
from mcp_asgi.transports.stdio import StdioTransport, _lines
from tests.conftest import serve
from tests.fixtures.procs import CLI_SERVER, cli
from tests.hostile_server import build_hostile_server, lenient_client
from tests.http_helpers import ACCEPT, initialize, modern_request

LEGACY = "2025-11-25"


def nested(depth: int) -> Any:
    """A JSON value of exactly `depth` levels of arrays and objects."""
    value: Any = 0
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


DEEP = "__deep__"


def nested_text(depth: int) -> str:
    """`nested(depth)` as JSON text, built without recursion (json.dumps gives up near 1000)."""
    opening = "".join("[" if level % 2 else '{"k":' for level in reversed(range(depth)))
    closing = "".join("]" if level % 2 else "}" for level in range(depth))
    return opening + "0" + closing


def raw_json(message: Any, deep: int = 0) -> bytes:
    # json.dumps escapes lone surrogates (ensure_ascii), so they reach the server as sent.
    # With `deep`, the string DEEP in `message` becomes a value nested `deep` levels.
    text = json.dumps(message)
    return (text.replace(json.dumps(DEEP), nested_text(deep)) if deep else text).encode()


@pytest.fixture
async def http():
    async with lenient_client(build_hostile_server().http_app()) as client:
        yield client


async def post_modern(http, method: str, params: dict[str, Any], request_id: Any = 1, deep: int = 0):
    body, headers = modern_request(method, params)
    body["id"] = request_id
    return await http.post(
        "/mcp", content=raw_json(body, deep), headers={**headers, "content-type": "application/json"}
    )


async def assert_still_serves(http) -> None:
    response = await post_modern(http, "tools/call", {"name": "add", "arguments": {"a": 2, "b": 40}}, 99)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["structuredContent"] == {"result": 42}


def assert_error(response, status: int, code: int, request_id: Any = "absent") -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = json.loads(response.content)
    assert body["jsonrpc"] == "2.0"
    assert body["error"]["code"] == code, body
    if request_id == "absent":
        assert "id" not in body
    else:
        assert body["id"] == request_id
    return body


class LegacySession:
    """A 2025-11-25 session on an in-process client."""

    def __init__(self, http, session_id: str) -> None:
        self.http = http
        self.headers = {
            "accept": ACCEPT,
            "content-type": "application/json",
            "mcp-session-id": session_id,
            "mcp-protocol-version": LEGACY,
        }

    @classmethod
    async def start(cls, http) -> LegacySession:
        return cls(http, await initialize(http, version=LEGACY))

    async def post(self, message: Any):
        return await self.http.post("/mcp", content=raw_json(message), headers=self.headers)

    async def assert_still_serves(self) -> None:
        arguments = {"a": 1, "b": 2}
        call = {"jsonrpc": "2.0", "id": 98, "method": "tools/call", "params": {"name": "add", "arguments": arguments}}
        response = await self.post(call)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["structuredContent"] == {"result": 3}


# Deep nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
async def test_deeply_nested_arguments_are_a_parse_error(http, depth):
    response = await post_modern(http, "tools/call", {"name": "echo", "arguments": {"value": DEEP}}, deep=depth)
    body = assert_error(response, 400, -32700)
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in body["error"]["message"]
    await assert_still_serves(http)


async def test_deep_body_of_brackets_only_is_a_parse_error(http):
    # Deeper than the interpreter's recursion limit: json.loads itself gives up.
    response = await http.post(
        "/mcp", content=b"[" * 50_000 + b"]" * 50_000, headers={"content-type": "application/json", "accept": ACCEPT}
    )
    assert_error(response, 400, -32700)
    await assert_still_serves(http)


async def test_deep_request_state_arguments_are_a_parse_error(http):
    params = {"name": "ask_name", "arguments": {"deep": DEEP}, "requestState": "x.y"}
    response = await post_modern(http, "tools/call", params, deep=900)
    assert_error(response, 400, -32700)
    await assert_still_serves(http)


async def test_nesting_at_the_limit_is_served_and_echoed(http):
    # The message itself is 4 levels (envelope, params, arguments, the value's key).
    value = nested(MAX_JSON_DEPTH - 3)
    response = await post_modern(http, "tools/call", {"name": "echo", "arguments": {"value": value}})
    assert response.status_code == 200, response.text
    # An object result is the structured content itself.
    assert response.json()["result"]["structuredContent"] == value


async def test_request_state_digest_of_arguments_at_the_limit(http):
    value = nested(MAX_JSON_DEPTH - 3)
    params = {"name": "ask_name", "arguments": {"value": value}, "requestState": "not.ours"}
    response = await post_modern(http, "tools/call", params)
    assert_error(response, 200, -32602, 1)


async def test_deep_nesting_behind_middleware_is_a_parse_error():
    # Each layer costs stack frames; the explicit limit does not depend on how many there are.
    mcp = build_hostile_server()
    app: Any = mcp.http_app()
    for _ in range(60):
        app = _passthrough(app)
    async with lenient_client(app) as http:
        response = await post_modern(http, "tools/call", {"name": "echo", "arguments": {"value": DEEP}}, deep=700)
        assert_error(response, 400, -32700)
        value = nested(MAX_JSON_DEPTH - 3)
        response = await post_modern(http, "tools/call", {"name": "echo", "arguments": {"value": value}})
        assert response.status_code == 200, response.text


def _passthrough(app: Any) -> Any:
    async def layer(scope, receive, send):
        await app(scope, receive, send)

    return layer


def test_depth_scan_ignores_brackets_inside_strings():
    text = '[[[[{{{{\\"' * 100
    body = json.dumps({"a": [text] * 50, "b": nested(10)}).encode()
    assert decode(body)["a"][0] == text
    exactly = json.dumps(nested(MAX_JSON_DEPTH))
    assert decode(exactly) == nested(MAX_JSON_DEPTH)
    for deeper in (json.dumps(nested(MAX_JSON_DEPTH + 1)), json.dumps(nested(MAX_JSON_DEPTH + 1)).encode("utf-16")):
        with pytest.raises(MCPError) as raised:
            decode(deeper)
        assert raised.value.code == -32700


# Lone surrogates ----------------------------------------------------------------------------


async def test_surrogate_request_id_is_echoed_as_valid_json(http):
    response = await post_modern(http, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 1}}, "\ud800")
    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["id"] == "\ud800"
    assert body["result"]["structuredContent"] == {"result": 2}


async def test_surrogate_method_tool_name_and_result_on_a_session(http):
    session = await LegacySession.start(http)
    response = await session.post({"jsonrpc": "2.0", "id": "\udfff", "method": "\ud800/x"})
    assert_error(response, 200, -32601, "\udfff")
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "\ud800", "arguments": {}}}
    body = assert_error(await session.post(call), 200, -32602, 2)
    assert "\ud800" in body["error"]["message"]
    arguments = {"text": "a\ud800b"}
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo_text", "arguments": arguments}}
    response = await session.post(call)
    assert response.status_code == 200
    assert json.loads(response.content)["result"]["content"][0]["text"] == "a\ud800b"
    await session.assert_still_serves()


def test_encode_never_raises():
    assert json.loads(encode({"id": 1, "result": {"text": "\ud800 é"}})) == {"id": 1, "result": {"text": "\ud800 é"}}
    circular: dict[str, Any] = {"jsonrpc": "2.0", "id": 7}
    circular["result"] = circular
    assert json.loads(encode(circular)) == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32603, "message": "Internal error: the reply could not be encoded as JSON"},
    }


# Unhashable ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", [[1], {}, {"a": [1]}])
async def test_client_response_with_unhashable_id_is_accepted_and_ignored(http, request_id):
    session = await LegacySession.start(http)
    response = await session.post({"jsonrpc": "2.0", "id": request_id, "result": {}})
    assert response.status_code == 202
    response = await session.post({"jsonrpc": "2.0", "id": request_id, "error": {"code": [], "message": {}}})
    assert response.status_code == 202
    await session.assert_still_serves()


async def test_pending_requests_match_only_what_was_asked():
    pending = PendingRequests(timeout=5)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with anyio.create_task_group() as group:
        results: list[Any] = []

        async def ask() -> None:
            results.append(await pending.ask("chan", "roots/list", {}, send))

        group.start_soon(ask)
        while not sent:
            await anyio.sleep(0.01)
        for bad in ([sent[0]["id"]], {}, True, None, 1.5):
            assert pending.answer("chan", {"id": bad, "result": {"roots": []}}) is False
        assert pending.answer("other", {"id": sent[0]["id"], "result": {}}) is False
        assert pending.answer("chan", {"id": sent[0]["id"], "result": {"roots": []}}) is True
    assert results == [{"roots": []}]


async def test_cancel_with_unhashable_request_id_on_a_session(http):
    session = await LegacySession.start(http)
    response = await session.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": []}})
    assert response.status_code == 202, response.text
    await session.assert_still_serves()


async def test_set_level_with_a_list_is_invalid_params(http):
    session = await LegacySession.start(http)
    response = await session.post({"jsonrpc": "2.0", "id": 4, "method": "logging/setLevel", "params": {"level": []}})
    assert_error(response, 200, -32602, 4)
    await session.assert_still_serves()


async def test_modern_log_level_list_is_invalid_params(http):
    params = {"_meta": {"io.modelcontextprotocol/logLevel": []}}
    response = await post_modern(http, "tools/list", params)
    assert_error(response, 400, -32602, 1)
    await assert_still_serves(http)


# Unicode digits in headers ------------------------------------------------------------------


async def test_host_with_unicode_digit_port_is_forbidden():
    mcp = build_hostile_server()
    async with lenient_client(mcp.http_app(allowed_hosts=["localhost:*", "testserver"])) as http:
        body, headers = modern_request("ping")
        raw = [(k.encode(), v.encode()) for k, v in headers.items()] + [(b"host", b"localhost:\xb2")]
        response = await http.post("/mcp", json=body, headers=raw)
        assert_error(response, 403, -32600)
        await assert_still_serves(http)


def raw_http(base_url: str, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (httpx would refuse them) and read the whole response."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def post_bytes(headers: dict[bytes, bytes], body: bytes) -> bytes:
    lines = [b"POST /mcp HTTP/1.1", b"Connection: close"] + [name + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    "header",
    [(b"Host", b"localhost:\xb2"), (b"Host", b"localhost:" + b"9" * 5000), (b"Origin", b"http://localhost:\xb2")],
    ids=["host-superscript", "host-5000-digits", "origin-superscript"],
)
def test_loopback_guard_refuses_unreadable_ports_on_uvicorn(header):
    body, headers = modern_request("tools/list")
    data = json.dumps(body).encode()
    with serve(build_hostile_server().http_app()) as url:
        sent = {b"Host": url.removeprefix("http://").encode(), b"Content-Length": str(len(data)).encode()}
        sent |= {name.encode(): value.encode() for name, value in headers.items()}
        sent[b"Content-Type"] = b"application/json"
        sent[header[0]] = header[1]
        status, reply = raw_http(url, post_bytes(sent, data))
        assert status == 403, reply
        assert json.loads(reply)["error"]["code"] == -32600
        sent[header[0]] = url.removeprefix("http://").encode() if header[0] == b"Host" else b"http://localhost"
        status, reply = raw_http(url, post_bytes(sent, data))
        assert status == 200, reply
        assert "add" in {tool["name"] for tool in json.loads(reply)["result"]["tools"]}


def test_allowed_hosts_entry_with_unicode_digit_port_is_a_clear_error():
    with pytest.raises(ValueError, match="has an invalid port"):
        HostOriginGuard(allowed_hosts=["localhost:\xb2"])


async def call_app(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """Call the ASGI app with headers exactly as given (an HTTP client would fix Content-Length)."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await anyio.sleep_forever()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    with anyio.fail_after(10):
        await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    ("declared", "status"), [(b"\xb2", 200), (b"1\xb2", 200), (b"9" * 5000, 413), (b"0" * 5000 + b"5", 200)]
)
async def test_odd_content_length_is_never_a_500(declared, status):
    app = build_hostile_server().http_app()
    body, headers = modern_request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"content-length", declared)]
    got, reply = await call_app(app, raw, json.dumps(body).encode())
    assert got == status, reply
    if status == 413:
        assert json.loads(reply)["error"]["code"] == -32600
    else:
        assert json.loads(reply)["result"]["structuredContent"] == {"result": 3}


@pytest.mark.parametrize("value", [b"=?base64?\xff?=", b"=?base64?\xb2\xb2\xb2\xb2?="])
async def test_non_ascii_base64_header_value_is_a_header_mismatch(http, value):
    body, headers = modern_request("tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    raw = [(k.encode(), v.encode()) for k, v in headers.items() if k != "mcp-name"] + [(b"mcp-name", value)]
    response = await http.post("/mcp", json=body, headers=raw)
    body = assert_error(response, 400, -32020, 1)
    assert body["error"]["message"] == "Header mismatch: the Mcp-Name header has a malformed base64 value"
    await assert_still_serves(http)


async def test_last_event_id_with_unicode_digit_sequence_is_a_bad_request(http):
    session = await LegacySession.start(http)
    call = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/call",
        "params": {"name": "slow_steps", "arguments": {"steps": 2}, "_meta": {"progressToken": "t"}},
    }
    response = await session.post(call)
    assert response.headers["content-type"].startswith("text/event-stream")
    event_id = next(line[3:].strip() for line in response.text.splitlines() if line.startswith("id:"))
    stream_id = event_id.rpartition(":")[0]
    for bad in ("\xb2", "1\xb2", "9" * 5000):
        headers = [(k.encode(), v.encode()) for k, v in session.headers.items()]
        headers.append((b"last-event-id", f"{stream_id}:{bad}".encode("latin-1")))
        response = await http.get("/mcp", headers=headers)
        assert_error(response, 400, -32600)
    await session.assert_still_serves()


# stdio --------------------------------------------------------------------------------------


def ping(request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "ping"}


@pytest.mark.parametrize(
    "hostile",
    [
        {"jsonrpc": "2.0", "id": [1], "result": {}},
        {"jsonrpc": "2.0", "id": {}, "error": {"code": "x", "message": []}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": []}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": {"a": 1}}},
    ],
    ids=["response-list-id", "error-object-id", "cancel-list", "cancel-object"],
)
def test_stdio_survives_unhashable_ids(hostile):
    with cli("run", CLI_SERVER) as proc:
        proc.send(hostile)
        proc.send(ping(7))
        assert proc.receive() == {"jsonrpc": "2.0", "id": 7, "result": {}}
        assert proc.popen.poll() is None


def test_stdio_answers_deep_and_surrogate_lines_and_keeps_serving():
    with cli("run", CLI_SERVER) as proc:
        proc.send(b"[" * 100_000 + b"]" * 100_000)
        reply = proc.receive()
        assert reply["error"]["code"] == -32700 and "id" not in reply
        meta = {"_meta": modern_request("tools/list")[0]["params"]["_meta"]}
        proc.send({**ping("\ud800"), "method": "\udc00", "params": meta})
        assert proc.receive() == {
            "jsonrpc": "2.0",
            "id": "\ud800",
            "error": {"code": -32601, "message": "Method not found: \udc00"},
        }
        proc.send(ping(8))
        assert proc.receive() == {"jsonrpc": "2.0", "id": 8, "result": {}}


def test_stdio_line_over_the_default_cap_is_invalid_request_and_skipped():
    with cli("run", CLI_SERVER) as proc:
        # A valid message, so only its length can be the reason; larger than the 4 MiB default.
        huge = raw_json({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"pad": "x" * (5 << 20)}})
        proc.send(huge)
        reply = proc.receive()
        assert reply["error"]["code"] == -32600 and "id" not in reply
        assert "longer than 4194304 bytes" in reply["error"]["message"]
        proc.send(ping(9))
        assert proc.receive() == {"jsonrpc": "2.0", "id": 9, "result": {}}
        assert proc.popen.poll() is None


async def test_stdio_line_cap_is_configurable():
    read_fd, write_fd = os.pipe()
    stdout = io.BytesIO()
    transport = StdioTransport(
        build_hostile_server(), stdin=os.fdopen(read_fd, "rb"), stdout=stdout, max_line_size=1000
    )
    with os.fdopen(write_fd, "wb") as stdin:
        stdin.write(raw_json(ping(1) | {"params": {"pad": "x" * 1000}}) + b"\n")
        stdin.write(raw_json(ping(2) | {"params": {"pad": "x" * 900}}) + b"\n")
    with anyio.fail_after(10):
        await transport.run()
    replies = [json.loads(line) for line in stdout.getvalue().splitlines()]
    too_long = "Invalid Request: message line longer than 1000 bytes"
    assert replies == [
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": too_long}},
        {"jsonrpc": "2.0", "id": 2, "result": {}},
    ]
    with pytest.raises(ValueError, match="max_line_size"):
        StdioTransport(build_hostile_server(), max_line_size=0)


def test_stdio_line_splitting_is_linear():
    # 512 reads of one 32 MiB line: re-joining the pending part on every read (the old
    # code) copies ~8 GiB and takes ~10 s here; joining once takes well under a second.
    chunk = b"x" * 65536
    started = time.monotonic()
    lines = list(_lines(iter([chunk] * 512 + [b"\nnext\n"]), 64 << 20))
    assert time.monotonic() - started < 3
    assert [len(line or b"") for line in lines] == [32 << 20, 4]


def test_stdio_overlong_line_is_reported_once_and_the_rest_skipped():
    chunks = [b"ok1\n" + b"a" * 6, b"a" * 6, b"a" * 100, b"a\nok2\nab", b"c"]
    assert list(_lines(iter(chunks), 10)) == [b"ok1", None, b"ok2", b"abc"]
    assert list(_lines(iter([b"a" * 10 + b"\n", b"a" * 11 + b"\n"]), 10)) == [b"a" * 10, None]


def test_depth_scan_agrees_with_the_parsed_depth():
    from mcp_asgi.protocol.jsonrpc import _nesting_exceeds

    rng = random.Random(8)
    texts = ['a\\"[', "]]\\\\", "{", "x\n[", '\\\\"{{', "\ud800]", "é{"]

    def value(level: int) -> Any:
        roll = rng.random()
        if level > 12 or roll < 0.3:
            return rng.choice([*texts, 1, None])
        if roll < 0.65:
            return [value(level + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["k", "[", '\\"}']): value(level + 1) for _ in range(rng.randint(0, 3))}

    def depth(item: Any) -> int:
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        return 0 if children is None else 1 + max(map(depth, children), default=0)

    for _ in range(2000):
        item = value(0)
        text = json.dumps(item)
        for body in (text.encode(), json.dumps(item, ensure_ascii=False), text.encode("utf-16")):
            for limit in (1, 2, 3, 5, 8, 13):
                assert _nesting_exceeds(body, limit) == (depth(item) > limit), (body, limit)
