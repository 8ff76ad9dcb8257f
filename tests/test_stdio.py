"""The stdio transport, through `mcp-asgi run` as a real subprocess."""

from __future__ import annotations

import json
import queue
import sys
import time

import pytest
from mcp import Client, StdioServerParameters

from tests.fixtures.procs import CLI_SERVER, FIXTURES, ROOT, cli

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def call(request_id, name, arguments, **params):
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, **params},
    }


def receive_until(proc, request_id, timeout=10):
    """Messages up to and including the response to `request_id`."""
    seen = []
    deadline = time.monotonic() + timeout
    while True:
        message = proc.receive(timeout=max(0.01, deadline - time.monotonic()))
        seen.append(message)
        if message.get("id") == request_id and ("result" in message or "error" in message):
            return seen


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_official_client_lists_and_calls_tools_over_stdio(mode):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_asgi", "run", CLI_SERVER, "--", "--greeting", "hey"],
        cwd=str(ROOT),
    )
    async with Client(params, mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert tools == {"add", "greet", "argv", "noisy", "lifespan_state", "slow"}
        result = await client.call_tool("add", {"a": 2, "b": 40})
        assert result.content[0].text == "42"
        greeting = await client.call_tool("greet", {"name": "Ann"})
        assert greeting.content[0].text == "hey, Ann"
        # The user's lifespan= ran around the stdio session.
        state = await client.call_tool("lifespan_state", {})
        assert state.content[0].text == "yes"


async def test_mcp_server_run_defaults_to_stdio():
    params = StdioServerParameters(command=sys.executable, args=[str(FIXTURES / "run_server.py")], cwd=str(ROOT))
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("add", {"a": 1, "b": 2})
        assert result.content[0].text == "3"


def test_eof_exits_zero_and_stdout_carries_only_protocol_messages():
    with cli("run", CLI_SERVER) as proc:
        proc.send(INITIALIZE)
        proc.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        proc.send(call(2, "noisy", {}))
        proc.close_stdin()
        assert proc.popen.wait(10) == 0
        time.sleep(0.1)  # let the drain threads finish
        lines = [json.loads(line) for line in proc.stdout]
        assert [m.get("id") for m in lines] == [1, 2]
        assert lines[1]["result"]["content"][0]["text"] == "ok"
        # print() and logging from the tool went to stderr, and so did the startup line.
        assert "print() from a tool" in proc.stderr
        assert "noisy tool ran" in proc.stderr
        assert "serving 'CLI fixture' over stdio" in proc.stderr


def test_eof_lets_requests_in_flight_finish():
    with cli("run", CLI_SERVER) as proc:
        proc.send(call(7, "slow", {"seconds": 0.5}, _meta=MODERN_META))
        proc.close_stdin()
        assert proc.popen.wait(10) == 0
        time.sleep(0.1)
        replies = [json.loads(line) for line in proc.stdout]
        assert replies[-1]["id"] == 7 and replies[-1]["result"]["content"][0]["text"] == "done"


def test_bad_line_gets_a_parse_error_without_id_and_the_server_goes_on():
    with cli("run", CLI_SERVER) as proc:
        proc.send(b"this is not json")
        error = proc.receive()
        assert error["error"]["code"] == -32700
        assert "id" not in error
        proc.send(b'["a", "batch"]')
        assert proc.receive()["error"]["code"] == -32600
        proc.send(INITIALIZE)
        assert proc.receive()["result"]["protocolVersion"] == "2025-06-18"


def test_modern_requests_need_no_handshake_and_legacy_ones_do():
    with cli("run", CLI_SERVER) as proc:
        proc.send({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": MODERN_META}})
        discover = proc.receive()["result"]
        assert "2026-07-28" in discover["supportedVersions"] and discover["resultType"] == "complete"
        proc.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}})
        error = proc.receive()["error"]
        assert error["code"] == -32600 and "initialize" in error["message"]
        proc.send(call(3, "add", {"a": 1, "b": 1}, _meta=MODERN_META))
        assert proc.receive()["result"]["structuredContent"] == {"result": 2}


def test_slow_tool_does_not_block_ping_and_cancelled_stops_it():
    with cli("run", CLI_SERVER) as proc:
        proc.send(INITIALIZE)
        proc.receive()
        proc.send(call(2, "slow", {"seconds": 30}, _meta={"progressToken": "p"}))
        progress = proc.receive()
        assert progress["method"] == "notifications/progress"
        assert progress["params"]["progressToken"] == "p"
        proc.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        assert proc.receive(timeout=5) == {"jsonrpc": "2.0", "id": 3, "result": {}}
        proc.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
        proc.send({"jsonrpc": "2.0", "id": 4, "method": "ping"})
        assert proc.receive(timeout=5)["id"] == 4
        # The cancelled request gets no response, and nothing keeps the process alive.
        proc.close_stdin()
        assert proc.popen.wait(5) == 0
        with pytest.raises(queue.Empty):
            proc.receive(timeout=0.2)


def test_sigterm_ends_a_busy_server_promptly():
    with cli("run", CLI_SERVER) as proc:
        proc.send(call(1, "slow", {"seconds": 30}, _meta=MODERN_META))
        proc.wait_for_stderr("serving")
        assert proc.terminate_and_time() < 5
        assert proc.popen.returncode == 0
