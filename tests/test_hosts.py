"""The host adapters' contracts that need no framework server: imports, the sync-runner hook, arguments."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mcp import Client
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi import Context, MCPServer
from mcp_asgi.concurrency import sync_runner
from tests.conftest import serve


def test_importing_mcp_asgi_imports_no_web_framework() -> None:
    code = (
        "import sys, mcp_asgi, mcp_asgi.asgi, mcp_asgi.server, mcp_asgi.context\n"
        "print(sorted(m for m in ('django', 'litestar', 'quart', 'fastapi') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _threads_server() -> MCPServer:
    mcp = MCPServer("threads")

    @mcp.tool
    def sync_thread() -> str:
        return threading.current_thread().name

    @mcp.tool
    async def async_thread() -> str:
        return threading.current_thread().name

    return mcp


class RunnerHost:
    """A host that runs its requests' sync user code in its own runner, as mount_django does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.ran: list[Callable[[], Any]] = []

    async def runner(self, fn: Callable[[], Any]) -> Any:
        self.ran.append(fn)
        # Run inline and report it: the tool returns this thread's name, so rename it for the call.
        thread = threading.current_thread()
        name, thread.name = thread.name, "host runner"
        try:
            return fn()
        finally:
            thread.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = sync_runner.set(self.runner)
        try:
            await self.app(scope, receive, send)
        finally:
            sync_runner.reset(token)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_sync_tools_run_in_the_runner_the_host_set(mode: str) -> None:
    host = RunnerHost(_threads_server().http_app())
    with serve(host) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            synced = await client.call_tool("sync_thread", {})
            asynced = await client.call_tool("async_thread", {})
    assert synced.content[0].text == "host runner"
    assert len(host.ran) == 1  # the async tool ran on the loop, not in the runner
    assert asynced.content[0].text != "host runner"


async def test_without_a_host_runner_sync_tools_run_in_the_worker_threads() -> None:
    with serve(_threads_server().http_app()) as base:
        async with Client(f"{base}/mcp", mode="2026-07-28") as client:
            synced = await client.call_tool("sync_thread", {})
    assert synced.content[0].text == "mcp-asgi worker thread"


def test_adapters_check_their_arguments() -> None:
    from quart import Quart

    from mcp_asgi.litestar import MCPPlugin
    from mcp_asgi.quart import mount_quart

    mcp = MCPServer("args")
    with pytest.raises(ValueError, match="must be a string starting with '/'"):
        MCPPlugin(mcp, "mcp")
    with pytest.raises(ValueError, match="cannot be '/'"):
        MCPPlugin(mcp, "/")
    with pytest.raises(TypeError, match="must be an MCP server or an ASGI app"):
        MCPPlugin(42, "/mcp")
    with pytest.raises(TypeError, match="must be a Quart application"):
        mount_quart(object(), "/mcp", mcp)
    with pytest.raises(ValueError, match="`path` must be a string"):
        mount_quart(Quart(__name__), "", mcp)


def test_mount_django_checks_its_arguments_without_configuring_django() -> None:
    # In a subprocess: nothing Django-related may stay behind in the test process.
    code = (
        "import pytest\n"
        "from mcp_asgi import MCPServer\n"
        "from mcp_asgi.django import mount_django\n"
        "async def django_app(scope, receive, send): pass\n"
        "with pytest.raises(TypeError, match='must be an ASGI app'): mount_django(None, '/mcp', MCPServer())\n"
        "with pytest.raises(TypeError, match='MCP server or an ASGI app'): mount_django(django_app, '/mcp', 42)\n"
        "with pytest.raises(ValueError, match=\"cannot be '/'\"): mount_django(django_app, '//', MCPServer())\n"
        "print(mount_django(django_app, '/mcp/', MCPServer()).prefix)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/mcp"


async def test_litestar_mount_keeps_root_path_and_custom_routes() -> None:
    from litestar import Litestar
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from mcp_asgi.litestar import MCPPlugin

    mcp = MCPServer("routes")

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"root_path": request.scope["root_path"], "url": str(request.url_for("health"))})

    app = Litestar([], plugins=[MCPPlugin(mcp, "/tools/mcp")])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        seen = (await client.get("/tools/mcp/health")).json()
        assert seen == {"root_path": "/tools/mcp", "url": "http://localhost/tools/mcp/health"}
        assert (await client.get("/tools/mcpx/health")).status_code == 404


async def test_quart_mount_gives_tools_the_quart_app() -> None:
    from quart import Quart

    from mcp_asgi.quart import mount_quart

    mcp = MCPServer("quart")

    @mcp.tool
    def app_name(ctx: Context) -> str:
        return f"{type(ctx.app).__name__}:{ctx.app.config['NAME']}"

    app = Quart(__name__)
    app.config["NAME"] = "weather"
    mount_quart(app, "/mcp", mcp)
    with serve(app) as base:
        async with Client(f"{base}/mcp", mode="legacy") as client:
            result = await client.call_tool("app_name", {})
    assert result.content[0].text == "Quart:weather"


async def test_the_documented_plain_asgi_host_runs_both_lifespans(tmp_path: Any, monkeypatch: Any) -> None:
    from tests.test_docs import ROOT, python_blocks, run_as_module

    monkeypatch.syspath_prepend(str(tmp_path))
    [block] = [b for b in python_blocks(ROOT / "docs" / "hosts.md") if "async def app(scope, receive, send)" in b.code]
    module = run_as_module(block, tmp_path)
    assert module.resources == {}
    with serve(module.app) as base:
        assert module.resources == {"greeting": "hello from a plain ASGI app"}
        # The MCP server's lifespan runs too (on uvicorn's loop, so looked up across loops).
        assert [run.alive for run in module.mcp._lifespan._runs.values()] == [True]
        for path in ("/mcp", "/mcp/"):
            answer = httpx.post(f"{base}{path}", json={}, headers={"accept": "application/json, text/event-stream"})
            assert answer.status_code == 400 and answer.json()["error"]["code"] == -32600
        assert httpx.get(f"{base}/").json() == {"mcp": "/mcp"}
        async with Client(f"{base}/mcp", mode="legacy") as client:
            assert (await client.call_tool("greeting", {})).content[0].text == "hello from a plain ASGI app"
    assert module.resources == {}
    assert not any(run.alive for run in module.mcp._lifespan._runs.values())
