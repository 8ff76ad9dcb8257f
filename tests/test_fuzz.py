"""Fuzz the HTTP endpoint with hostile bodies and headers, on both protocol generations.

A seeded generator (no extra dependency, reproducible from the seed it prints on failure)
mutates well-formed requests of every method: wrong types, huge, deep and surrogate values,
unhashable ids, odd `_meta`, odd headers. Every answer must be below 500, every answer to a
request valid JSON-RPC (plain JSON, or SSE whose data lines are JSON-RPC) carrying the
request's id or none, and the server must still answer a normal `tools/call` afterwards.

The default run is short enough for CI; `MCP_ASGI_FUZZ_SECONDS=120` fuzzes longer and
`MCP_ASGI_FUZZ_SEED=<n>` replays a run.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from tests.conftest import serve
from tests.hostile_server import build_fuzz_server, lenient_client
from tests.http_helpers import ACCEPT, initialize, modern_meta

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
SECONDS = float(os.environ.get("MCP_ASGI_FUZZ_SECONDS", "4"))
SEED = int(os.environ.get("MCP_ASGI_FUZZ_SEED", "8"))

METHODS = [
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "server/discover",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "initialize",
]
NOTIFICATIONS = ["notifications/initialized", "notifications/cancelled", "notifications/progress"]
ODD_METHODS = ["", "tools/", "rpc.discover", "\ud800", "tools/call\x00", "x" * 5000, "subscriptions/unknown"]
# Calls that finish promptly with any arguments (no sleeping, no waiting for the client).
TOOL_ARGUMENTS: dict[str, dict[str, Any]] = {
    "add": {"a": 1, "b": 2},
    "echo": {"value": {"nested": [1, "two", None]}},
    "echo_text": {"text": "hello"},
    "order": {"items": [{"name": "pen", "quantity": 2, "tags": ["office"]}], "mode": "cheap"},
    "regional": {"region": "eu-west", "limit": 2},
    "ask_name": {},
}
PARAMS: dict[str, dict[str, Any]] = {
    "resources/read": {"uri": "data://config"},
    "prompts/get": {"name": "review", "arguments": {"code": "x = 1", "language": "python"}},
    "completion/complete": {
        "ref": {"type": "ref/prompt", "name": "review"},
        "argument": {"name": "language", "value": "py"},
    },
    "logging/setLevel": {"level": "info"},
    "resources/subscribe": {"uri": "data://config"},
    "resources/unsubscribe": {"uri": "data://config"},
    "initialize": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}},
    "notifications/cancelled": {"requestId": 1, "reason": "fuzz"},
    "notifications/progress": {"progressToken": "t", "progress": 1},
}


@dataclass
class Case:
    generation: str
    body: bytes
    headers: dict[str, bytes]
    message: Any = None  # the message before serialization, when it is one
    http_method: str = "POST"
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.generation} {self.http_method} {self.notes} headers={self.headers!r} body={self.body[:300]!r}"


class Fuzzer:
    """Makes hostile requests from well-formed ones; every choice comes from one seeded Random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        choices = [
            lambda: rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**100, True, False, None]),
            lambda: rng.choice([0.5, -0.0, 1e308, 1e-308, float("inf"), float("nan")]),
            lambda: rng.choice(["", " ", "\ud800", "a\udfffb", "\x00", "é" * 10, "../../etc", "data://config"]),
            lambda: rng.choice(["users://1/profile", "users://\ud800/profile", "%", "\n", "x" * rng.randint(0, 70000)]),
            lambda: [self.value(depth + 1) for _ in range(rng.randint(0, 3))] if depth < 4 else [],
            lambda: {self.key(): self.value(depth + 1) for _ in range(rng.randint(0, 3))} if depth < 4 else {},
            lambda: rng.choice([[1], {}, {"a": []}, [[]]]),
        ]
        return rng.choice(choices)()

    def key(self) -> str:
        return self.rng.choice(["", "a", "name", "uri", "_meta", "\ud800", "arguments", "__proto__", "k" * 300])

    def request(self, generation: str) -> dict[str, Any]:
        rng = self.rng
        method = rng.choice(METHODS + NOTIFICATIONS + ODD_METHODS[:2])
        if method == "tools/call":
            name = rng.choice(sorted(TOOL_ARGUMENTS))
            if generation == LEGACY and name == "ask_name":
                name = "echo"  # a 2025 session would wait for the client's answer
            params: dict[str, Any] = {"name": name, "arguments": dict(TOOL_ARGUMENTS[name])}
        else:
            params = json.loads(json.dumps(PARAMS.get(method, {})))
        if generation == MODERN:
            params["_meta"] = modern_meta()
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if not method.startswith("notifications/"):
            message["id"] = rng.randint(1, 10**6)
        return message

    def mutate(self, message: dict[str, Any], notes: list[str]) -> Any:
        rng = self.rng
        for _ in range(rng.randint(0, 3)):
            kind = rng.choice(
                ["param", "argument", "meta", "id", "method", "drop", "params", "envelope", "request_state"]
            )
            notes.append(kind)
            params = message.get("params") if isinstance(message.get("params"), dict) else None
            if kind == "param" and params is not None:
                params[rng.choice([*params, self.key()])] = self.value()
            elif kind == "argument" and params is not None and isinstance(params.get("arguments"), dict):
                arguments = params["arguments"]
                arguments[rng.choice([*arguments, self.key()])] = self.value()
            elif kind == "meta" and params is not None:
                meta = params.get("_meta")
                if isinstance(meta, dict) and rng.random() < 0.8:
                    keys = [*meta, "io.modelcontextprotocol/logLevel", "progressToken", self.key()]
                    meta[rng.choice(keys)] = self.value()
                else:
                    params["_meta"] = self.value()
            elif kind == "id":
                message["id"] = rng.choice([[1], {}, None, True, 1.5, "\ud800", "", 2**70, -1, "x" * 1000])
            elif kind == "method":
                message["method"] = rng.choice([*ODD_METHODS, 5, None, [], {}])
            elif kind == "drop" and params:
                del params[rng.choice(list(params))]
            elif kind == "params":
                message["params"] = rng.choice([[], "x", 1, None, {}, {"_meta": []}])
            elif kind == "envelope":
                message[rng.choice(["jsonrpc", "result", "error", "extra"])] = self.value()
            elif kind == "request_state" and params is not None:
                params["requestState"] = self.value() if rng.random() < 0.5 else "a.b"
                params["inputResponses"] = self.value()
        return message

    def body(self, message: Any, notes: list[str]) -> bytes:
        rng = self.rng
        text = json.dumps(message).encode()  # escapes lone surrogates, writes NaN/Infinity as Python does
        roll = rng.random()
        if roll < 0.05:
            notes.append("truncated")
            return text[: rng.randint(0, len(text))]
        if roll < 0.08:
            notes.append("deep")
            depth = rng.choice([199, 201, 1000, 30000])
            return text.replace(b"{", b"[" * depth + b"{", 1).rstrip(b"}") + b"}" + b"]" * depth
        if roll < 0.10:
            notes.append("invalid utf-8")
            return text.replace(b'"', b'"\xff\xfe', 1)
        if roll < 0.12:
            notes.append("batch")
            return b"[" + text + b"," + text + b"]"
        if roll < 0.14:
            notes.append("utf-16")
            return json.dumps(message).encode("utf-16")
        return text

    def headers(self, case: Case, generation: str, message: Any, session_id: str | None) -> None:
        rng = self.rng
        headers = case.headers
        headers["accept"] = ACCEPT.encode()
        headers["content-type"] = b"application/json"
        headers["mcp-protocol-version"] = generation.encode()
        if session_id is not None:
            headers["mcp-session-id"] = session_id.encode()
        params = message.get("params") if isinstance(message, dict) else None
        if generation == MODERN and isinstance(message, dict) and isinstance(message.get("method"), str):
            headers["mcp-method"] = message["method"].encode("utf-8", "replace")
            if isinstance(params, dict) and isinstance(params.get("name"), str):
                headers["mcp-name"] = params["name"].encode("utf-8", "replace")
                arguments = params.get("arguments")
                if params["name"] == "regional" and isinstance(arguments, dict):
                    headers["mcp-param-region"] = str(arguments.get("region")).encode("utf-8", "replace")
            elif isinstance(params, dict) and isinstance(params.get("uri"), str):
                headers["mcp-name"] = params["uri"].encode("utf-8", "replace")
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            name = rng.choice(
                [
                    "host",
                    "origin",
                    "accept",
                    "content-type",
                    "content-length",
                    "mcp-protocol-version",
                    "mcp-method",
                    "mcp-name",
                    "mcp-session-id",
                    "last-event-id",
                    "mcp-param-region",
                    "mcp-param-unknown",
                ]
            )
            case.notes.append(f"header {name}")
            headers[name] = rng.choice(
                [
                    b"",
                    b" ",
                    b"\xb2",
                    b"localhost:\xb2",
                    b"localhost:" + b"9" * 5000,
                    b"[::1]:8000",
                    b"http://localhost:\xb2",
                    b"null",
                    b"evil.example",
                    b"text/event-stream",
                    b"application/json; charset=utf-16",
                    b"*/*",
                    b"2025-06-18",
                    b"1999-01-01",
                    b"-1",
                    b"1:\xb2",
                    b"=?base64?\xff?=",
                    b"=?base64?8J+Ygg==?=",
                    b"\xff" * 100,
                    b"x" * 8000,
                ]
            )

    def case(self, generation: str, session_id: str | None) -> Case:
        notes: list[str] = []
        message = self.mutate(self.request(generation), notes)
        case = Case(generation, self.body(message, notes), {}, message, notes=notes)
        self.headers(case, generation, message, session_id)
        if generation == LEGACY and self.rng.random() < 0.05:
            case.http_method = self.rng.choice(["DELETE", "GET", "PUT"])
            case.body = b""
            if case.http_method == "DELETE":
                case.headers["mcp-session-id"] = b"not-a-session"
            elif case.http_method == "GET":
                # Never a readable event id: a real one would replay and stay open.
                case.headers["last-event-id"] = self.rng.choice([b"1:\xb2", b"x:y", b"9" * 40, b""])
        return case


def check_response(case: Case, response: httpx.Response) -> None:
    where = case.describe()
    assert response.status_code < 500, f"{response.status_code} {response.text[:500]}\n{where}"
    if not response.content:
        return
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        lines = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        messages = [json.loads(line) for line in lines if line]
    else:
        assert content_type.startswith("application/json"), f"{content_type}: {response.text[:300]}\n{where}"
        messages = [json.loads(response.content)]
    for message in messages:
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", f"{message!r}\n{where}"
    replies = [m for m in messages if "result" in m or "error" in m]
    assert len(replies) <= 1, f"{replies!r}\n{where}"
    for reply in replies:
        assert ("result" in reply) != ("error" in reply), f"{reply!r}\n{where}"
        if "id" in reply:
            sent = case.message.get("id") if isinstance(case.message, dict) else None
            assert reply["id"] == sent and reply["id"] is not None, f"id {reply['id']!r} for {sent!r}\n{where}"


async def send(http: httpx.AsyncClient, case: Case) -> httpx.Response:
    with anyio.fail_after(10):
        headers = [(name.encode("latin-1"), value) for name, value in case.headers.items()]
        return await http.request(case.http_method, "/mcp", content=case.body, headers=headers)


async def normal_call(http: httpx.AsyncClient, generation: str, session_id: str | None) -> None:
    params: dict[str, Any] = {"name": "add", "arguments": {"a": 20, "b": 22}}
    headers = {"accept": ACCEPT, "mcp-protocol-version": generation}
    if generation == MODERN:
        params["_meta"] = modern_meta()
        headers |= {"mcp-method": "tools/call", "mcp-name": "add"}
    else:
        assert session_id is not None
        headers["mcp-session-id"] = session_id
    message = {"jsonrpc": "2.0", "id": "after", "method": "tools/call", "params": params}
    response = await http.post("/mcp", json=message, headers=headers)
    assert response.status_code == 200, response.text
    assert json.loads(response.content)["result"]["structuredContent"] == {"result": 42}


async def fuzz(http: httpx.AsyncClient, seconds: float, seed: int) -> int:
    """Send cases for `seconds`; the number sent."""
    fuzzer = Fuzzer(random.Random(seed))
    session_id = await initialize(http, version=LEGACY)
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        generation = fuzzer.rng.choice([MODERN, LEGACY])
        case = fuzzer.case(generation, session_id)
        response = await send(http, case)
        check_response(case, response)
        sent += 1
        if sent % 50 == 0:
            await normal_call(http, MODERN, None)
            await normal_call(http, LEGACY, session_id)
            # A fuzzed DELETE or `initialize` may have ended or replaced nothing of ours, but
            # a fresh session keeps the 2025 cases meaningful either way.
            session_id = await initialize(http, version=LEGACY)
    await normal_call(http, MODERN, None)
    await normal_call(http, LEGACY, session_id)
    return sent


async def test_fuzz_in_process():
    app = build_fuzz_server().http_app(allowed_hosts=["localhost:*", "127.0.0.1:*", "testserver"])
    async with lenient_client(app) as http:
        sent = await fuzz(http, SECONDS * 0.75, SEED)
    assert sent >= 50, f"only {sent} cases in {SECONDS * 0.75} s (seed {SEED})"


async def test_fuzz_on_uvicorn():
    # Content-Length is the server's to check here: a wrong one would desynchronise the connection.
    with serve(build_fuzz_server().http_app()) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            sent = await fuzz_uvicorn(http, SECONDS * 0.25, SEED + 1)
    assert sent >= 10, f"only {sent} cases (seed {SEED + 1})"


async def fuzz_uvicorn(http: httpx.AsyncClient, seconds: float, seed: int) -> int:
    fuzzer = Fuzzer(random.Random(seed))
    session_id = await initialize(http, version=LEGACY)
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        case = fuzzer.case(fuzzer.rng.choice([MODERN, LEGACY]), session_id)
        case.headers.pop("content-length", None)
        case.headers.pop("host", None)
        try:
            response = await send(http, case)
        except httpx.LocalProtocolError:
            continue  # a header value the client itself refuses to send
        check_response(case, response)
        sent += 1
    await normal_call(http, MODERN, None)
    await normal_call(http, LEGACY, session_id)
    return sent
