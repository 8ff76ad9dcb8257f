"""`MCPServer.run()` and `run_async()`."""

from __future__ import annotations

import socket
import sys

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.conftest import free_port
from tests.fixtures.procs import FIXTURES, Proc
from tests.servers import build_server


async def wait_for_port(port: int, timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.02)
            else:
                await stream.aclose()
                return


async def test_run_inside_a_running_loop_points_to_run_async():
    with pytest.raises(RuntimeError, match=r"run_async"):
        build_server().run("http", port=free_port())


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_run_async_serves_streamable_http_inside_a_running_loop(mode):
    port = free_port()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: build_server().run_async("http", port=port))
        await wait_for_port(port)
        async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as client:
            assert (await client.call_tool("add", {"a": 1, "b": 2})).content[0].text == "3"
        group.cancel_scope.cancel()


async def test_run_async_serves_legacy_sse_at_sse_and_messages():
    port = free_port()
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: build_server().run_async("sse", port=port, keepalive_interval=5))
        await wait_for_port(port)
        async with Client(sse_client(f"http://127.0.0.1:{port}/sse"), mode="legacy") as client:
            assert (await client.call_tool("add", {"a": 2, "b": 2})).content[0].text == "4"
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"http://127.0.0.1:{port}/messages/")).status_code == 400
        group.cancel_scope.cancel()


async def test_run_async_rejects_unknown_transports_and_busy_ports():
    server = build_server()
    with pytest.raises(ValueError, match="transport"):
        await server.run_async("websocket")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(RuntimeError, match="already in use"):
            await server.run_async("http", port=port)
    with pytest.raises(TypeError, match="stdio takes no HTTP options"):
        await server.run_async("stdio", stateless=True)


def test_run_in_a_script_serves_http_until_sigterm():
    port = free_port()
    proc = Proc([sys.executable, str(FIXTURES / "run_server.py"), "http", str(port)])
    try:
        proc.wait_for_stderr(f"over Streamable HTTP at http://127.0.0.1:{port}/mcp")
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"accept": "application/json, text/event-stream"}
        assert httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, headers=headers).status_code == 400
        assert proc.terminate_and_time() < 5
        assert proc.popen.returncode == 0
    finally:
        proc.kill()
