"""The `mcp-asgi` command as a user runs it: real subprocesses, real ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mcp import Client

from tests.conftest import free_port
from tests.fixtures.procs import CLI_SERVER, child_env, cli, http_cli, run_cli


def error_line(completed) -> str:
    """The CLI's error: exactly one line on stderr, and a non-zero exit."""
    assert completed.returncode == 1, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("mcp-asgi: error: ")
    return lines[0]


@pytest.mark.parametrize("transport", ["http", "streamable-http"])
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_run_serves_streamable_http_to_the_official_client(transport, mode):
    with http_cli(CLI_SERVER, "--transport", transport) as (proc, url):
        assert f"over Streamable HTTP at {url}/mcp" in proc.stderr
        async with Client(f"{url}/mcp", mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert tools == {"add", "greet", "argv", "noisy", "lifespan_state", "slow"}
            assert (await client.call_tool("add", {"a": 40, "b": 2})).content[0].text == "42"


async def test_arguments_after_double_dash_are_the_servers_argv():
    with http_cli(CLI_SERVER, "--transport", "http", "--", "--greeting", "salut", "extra") as (_, url):
        async with Client(f"{url}/mcp", mode="2026-07-28") as client:
            argv = await client.call_tool("argv", {})
            assert argv.structured_content == {"result": ["--greeting", "salut", "extra"]}
            assert (await client.call_tool("greet", {"name": "Zoé"})).content[0].text == "salut, Zoé"


async def test_module_spec_custom_path_and_stateless_options():
    spec = "tests.fixtures.cli_server:mcp"
    with http_cli(spec, "--transport", "http", "--path", "/api", "--stateless", "--json-response") as (_, url):
        async with Client(f"{url}/api", mode="legacy") as client:
            assert (await client.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"


@pytest.mark.parametrize(
    ("source", "spec_suffix"),
    [
        ("server = MCPServer('Named server')", ""),
        ("def app():\n    return MCPServer('From factory')", ""),
        ("custom = MCPServer('Custom')", ":custom"),
        ("mcp = MCPServer('From app').http_app()", ""),
    ],
)
def test_finds_the_server_object(tmp_path, source, spec_suffix):
    path = tmp_path / "server_file.py"
    path.write_text(f"from mcp_asgi import MCPServer\n{source}\n")
    port = free_port()
    # The port is taken so the command stops right after loading the server, with a known error.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        completed = run_cli("run", f"{path}{spec_suffix}", "--transport", "http", "--port", str(port))
    line = error_line(completed)
    assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line


def test_file_not_found():
    line = error_line(run_cli("run", "no/such/server.py"))
    assert "no/such/server.py: not found" in line and "path" in line


def test_import_error_names_the_exception_and_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import not_a_real_module_xyz\n")
    line = error_line(run_cli("run", str(path)))
    assert "importing" in line and "ModuleNotFoundError" in line and "not_a_real_module_xyz" in line
    assert "--log-level debug" in line

    debug = run_cli("run", str(path), "--log-level", "debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and 'broken.py", line 1' in debug.stderr


def test_no_server_object(tmp_path):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    line = error_line(run_cli("run", str(path)))
    assert "no server object found" in line and "mcp = MCPServer(" in line


def test_object_of_the_wrong_type(tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text("app = {'not': 'a server'}\ndef server(config):\n    return None\n")
    line = error_line(run_cli("run", str(path)))
    assert "app is a dict" in line and "server is a function that needs arguments" in line
    assert "not an MCPServer" in line
    missing = error_line(run_cli("run", f"{path}:nothing"))
    assert "no object named 'nothing'" in missing


def test_unknown_module():
    line = error_line(run_cli("run", "no_such_pkg_xyz.server:mcp"))
    assert "no module named 'no_such_pkg_xyz.server'" in line


def test_port_in_use():
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        line = error_line(run_cli("run", CLI_SERVER, "--transport", "sse", "--port", str(port)))
    assert f"port {port} on 127.0.0.1 is already in use" in line


def test_http_only_options_are_refused_for_stdio():
    line = error_line(run_cli("run", CLI_SERVER, "--stateless"))
    assert "--stateless" in line and "--transport http" in line


def test_version():
    completed = run_cli("version")
    assert completed.returncode == 0
    assert completed.stdout.startswith("mcp-asgi 0.1.0") and "2026-07-28" in completed.stdout


def test_dev_without_npx_says_how_to_get_it(tmp_path):
    # An empty PATH: the child runs through sys.executable, but finds no npx.
    completed = run_cli("dev", CLI_SERVER, env=child_env(PATH=str(tmp_path)))
    line = error_line(completed)
    assert "npx not found" in line and "Node.js" in line


def test_main_block_of_the_file_does_not_run():
    # cli_server.py raises SystemExit in its `__main__` block; the CLI imports it under another name.
    completed = run_cli("run", CLI_SERVER, "--log-level", "debug")
    assert completed.returncode == 0, completed.stderr
    assert "__main__ block ran" not in completed.stderr


def test_sigterm_with_an_open_legacy_sse_stream_exits_promptly():
    with http_cli(CLI_SERVER, "--transport", "sse") as (proc, url):
        with httpx.stream("GET", f"{url}/sse", timeout=10) as response:
            assert response.status_code == 200
            lines = response.iter_lines()  # kept referenced: a dropped iterator closes the stream
            assert next(lines) == "event: endpoint"
            assert next(lines).startswith("data: /messages/?session_id=")
            # Well under uvicorn's graceful-shutdown cut-off: the stream was ended, not timed out.
            assert proc.terminate_and_time() < 2
            assert list(lines) == [""]  # the blank line ending the event read above, then the end of the stream
        assert proc.popen.returncode == 0


def test_sigterm_with_an_open_streamable_http_get_stream_exits_promptly():
    with http_cli(CLI_SERVER, "--transport", "http") as (proc, url):
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
        }
        session = httpx.post(f"{url}/mcp", json=init, headers=headers).headers["mcp-session-id"]
        stream_headers = {"accept": "text/event-stream", "mcp-session-id": session}
        with httpx.stream("GET", f"{url}/mcp", headers=stream_headers, timeout=10) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines) == ": stream open"
            assert proc.terminate_and_time() < 2
            assert list(lines) == [""]  # the blank line ending the event read above, then the end of the stream
        assert proc.popen.returncode == 0


def test_python_dash_m_and_console_script_agree():
    # The console script installed beside this interpreter (each supported Python has its own venv).
    script = Path(sys.executable).parent / "mcp-asgi"
    if not script.exists():
        pytest.skip("console script not installed")
    completed = subprocess.run([str(script), "version"], capture_output=True, text=True, timeout=30)
    assert completed.stdout == run_cli("version").stdout


# ASGI apps, several servers, a server mounted in an app.

CLI_APP = str(Path(CLI_SERVER).with_name("cli_app.py"))


def blocked_port_run(*args: str) -> subprocess.CompletedProcess:
    """`mcp-asgi run ARGS --port P` with P taken: the command stops right after choosing what to serve."""
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        completed = run_cli("run", *args, "--port", str(port))
    assert f"port {port} on 127.0.0.1 is already in use" in completed.stderr, completed.stderr
    return completed


@pytest.mark.parametrize("spec", [CLI_APP, f"{CLI_APP}:app"])
async def test_runs_a_fastapi_app_over_http_as_it_is(spec):
    with http_cli(spec, "--transport", "http") as (proc, url):
        assert f"serving the ASGI app 'app' (FastAPI) at {url}; MCP at {url}/mcp" in proc.stderr
        assert httpx.get(f"{url}/api/ping").json() == {"pong": True}
        async with Client(f"{url}/mcp", mode="2026-07-28") as client:
            assert (await client.call_tool("count", {})).content[0].text == "3"
        assert proc.terminate_and_time() < 5


def test_an_asgi_app_over_stdio_says_http_and_names_the_servers():
    line = error_line(run_cli("run", CLI_APP))
    assert "app is an ASGI app (FastAPI), which can only be served over HTTP: add --transport http" in line
    assert f"or serve an MCP server over stdio: name one of its MCP servers (notes): {CLI_APP}:notes" in line
    assert "needs arguments" not in line


def test_mcp_server_options_are_refused_for_an_app():
    line = error_line(run_cli("run", f"{CLI_APP}:app", "--transport", "http", "--path", "/x", "--stateless"))
    assert "--path and --stateless configure an MCP server" in line and f"{CLI_APP}:name" in line


@pytest.mark.parametrize(
    "source",
    [
        "from starlette.applications import Starlette\napp = Starlette()",
        "async def app(scope, receive, send):\n    pass",
        "class App:\n    async def __call__(self, scope, receive, send):\n        pass\napp = App()",
    ],
)
def test_any_asgi_app_is_recognised(tmp_path, source):
    path = tmp_path / "asgi_file.py"
    path.write_text(source + "\n")
    line = error_line(run_cli("run", str(path)))
    assert "app is an ASGI app" in line and "can only be served over HTTP" in line
    assert "or serve an MCP server" not in line  # the file has none


def test_several_servers_are_listed(tmp_path):
    path = tmp_path / "two.py"
    path.write_text("from mcp_asgi import MCPServer\nbilling = MCPServer('B')\nsearch = MCPServer('S').http_app()\n")
    line = error_line(run_cli("run", str(path)))
    assert f"defines several MCP servers; name one of its MCP servers (billing, search): {path}:billing" in line


def test_wrong_default_name_also_lists_the_servers(tmp_path):
    path = tmp_path / "wrong_app.py"
    path.write_text("from mcp_asgi import MCPServer\napp = {'not': 'a server'}\nweather = MCPServer('W')\n")
    line = error_line(run_cli("run", str(path)))
    assert "app is a dict" in line and f"or name one of its MCP servers (weather): {path}:weather" in line


def test_the_only_server_is_used_whatever_its_name(tmp_path):
    path = tmp_path / "one.py"
    path.write_text("from mcp_asgi import MCPServer\nweather = MCPServer('W')\n")
    completed = blocked_port_run(str(path), "--transport", "http")
    assert completed.stderr.count("\n") == 1, completed.stderr


def test_warns_when_the_chosen_server_is_mounted_in_an_app_of_the_file(tmp_path):
    path = tmp_path / "mounted.py"
    path.write_text(
        "from fastapi import FastAPI\nfrom mcp_asgi import MCPServer, mount\n"
        "mcp = MCPServer('M')\napp = FastAPI()\nmount(app, '/tools/mcp', mcp)\n"
    )
    stderr = blocked_port_run(str(path), "--transport", "http").stderr
    warning = stderr.splitlines()[0]
    assert warning.startswith("mcp-asgi: warning: 'mcp' is mounted at /tools/mcp in 'app' (FastAPI) in this file")
    assert f"To serve the whole app: mcp-asgi run {path}:app --transport http" in warning
    # A server that is not mounted anywhere gets no warning.
    assert "warning" not in blocked_port_run(CLI_SERVER, "--transport", "http").stderr


def test_dev_never_waits_at_the_npx_install_prompt(tmp_path):
    # A stand-in npx that records how it was called and whether anything could answer a prompt.
    record = tmp_path / "npx-args"
    npx = tmp_path / "npx"
    npx.write_text(
        f'#!/bin/sh\necho "$@" > {record}\n'
        f'if read answer; then echo "stdin: $answer"; else echo "stdin: eof"; fi >> {record}\n'
    )
    npx.chmod(0o755)
    port = free_port()
    with cli("dev", CLI_APP, "--port", str(port), env=child_env(PATH=f"{tmp_path}:/usr/bin:/bin")) as proc:
        proc.wait_for_stderr("serving")
        deadline = time.monotonic() + 10
        while (record.read_text() if record.exists() else "").count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.terminate_and_time() < 5
    args, stdin = record.read_text().splitlines()
    # --yes before the package: npx installs without asking.
    assert args.split()[:2] == ["--yes", "@modelcontextprotocol/inspector"]
    assert args.endswith(f"--server-url http://127.0.0.1:{port}/mcp")
    # Its stdin is closed, so no other prompt can wait for an answer either.
    assert stdin == "stdin: eof"
