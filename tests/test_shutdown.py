"""SIGTERM stops the host promptly: open streams end cleanly, calls in flight get a graceful period.

Real processes: a plain `python -m uvicorn module:app` (the README's deployment, a FastAPI
host with `mount()`, a Starlette host with `combine_lifespans`) and `run(transport="http")`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.fixtures.procs import FIXTURES, Proc, http_cli, run_cli
from tests.http_helpers import ACCEPT, modern_request

APP_MODULE = "tests.fixtures.shutdown_app"


def uvicorn_proc(name: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "uvicorn", f"{APP_MODULE}:{name}", "--port", str(port), "--log-level", "info"])
    proc.wait_for_stderr("Application startup complete")
    return proc, f"http://127.0.0.1:{port}/mcp"


def new_session(http: httpx.Client, url: str, version: str) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    return http.post(url, json=init, headers={"accept": ACCEPT}).headers["mcp-session-id"]


def open_get_stream(http: httpx.Client, url: str) -> Any:
    """A new 2025 session's GET stream (a context manager, as `http.stream`)."""
    session = new_session(http, url, "2025-06-18")
    return http.stream("GET", url, headers={"accept": "text/event-stream", "mcp-session-id": session})


def data_frames(lines: Iterator[str]) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in lines if line.startswith("data:")]


@pytest.mark.parametrize("name", ["app", "host", "combined"])
def test_sigterm_ends_open_streams_under_plain_uvicorn(name: str) -> None:
    proc, url = uvicorn_proc(name)
    try:
        listen, listen_headers = modern_request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        with (
            httpx.Client(timeout=10) as http,
            open_get_stream(http, url) as get_stream,
            http.stream("POST", url, json=listen, headers=listen_headers) as listen_stream,
        ):
            get_lines = get_stream.iter_lines()
            assert next(get_lines) == ": stream open"
            listen_lines = listen_stream.iter_lines()
            (ack,) = data_frames(iter([next(listen_lines), next(listen_lines)]))
            assert ack["method"] == "notifications/subscriptions/acknowledged"

            # Before: uvicorn waited for these streams forever (still running after 40 s).
            assert proc.terminate_and_time() < 2
            assert [line for line in get_lines if line] == []  # the GET stream's body ended, empty
            (result,) = data_frames(listen_lines)  # the listen stream ended with its result
            assert result["id"] == 1 and "result" in result
    finally:
        proc.kill()
    # uvicorn shuts down cleanly, then re-raises the signal it caught so the exit status says
    # SIGTERM (as for any app under plain uvicorn); `run()` exits 0 instead.
    assert proc.popen.returncode == -signal.SIGTERM
    assert "Application shutdown complete" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_ends_an_open_legacy_sse_stream_under_plain_uvicorn() -> None:
    proc, url = uvicorn_proc("sse_app")
    try:
        with httpx.stream("GET", url.replace("/mcp", "/sse"), timeout=10) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: endpoint"
            assert next(lines).startswith("data: /messages/?session_id=")
            assert proc.terminate_and_time() < 2
            assert [line for line in lines if line] == []  # after the endpoint event: the end of the body
    finally:
        proc.kill()
    assert proc.popen.returncode == -signal.SIGTERM
    assert "Application shutdown complete" in proc.stderr


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_sigterm_never_waits_for_a_question_the_client_does_not_answer(backend: str, request: Any) -> None:
    # Before: the question's 300 s timeout held the worker (and uvicorn's master) for 5 minutes.
    env = dict(os.environ)
    if backend == "redis":
        env.update(MCP_ASGI_REDIS_URL=request.getfixturevalue("redis_url"), MCP_ASGI_STATE_SECRET="s")
    port = free_port()
    proc = Proc([sys.executable, "-m", "uvicorn", f"{APP_MODULE}:app", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        proc.wait_for_stderr("Application startup complete")
        with httpx.Client(timeout=20) as http:
            init = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {"elicitation": {}}},
            }
            session = http.post(url, json=init, headers={"accept": ACCEPT}).headers["mcp-session-id"]
            headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ask"}}
            with http.stream("POST", url, json=body, headers=headers) as reply:
                lines = reply.iter_lines()
                question = next(json.loads(line[5:]) for line in lines if line.startswith("data:"))
                assert question["method"] == "elicitation/create"
                started = time.monotonic()
                proc.popen.send_signal(signal.SIGTERM)
                rest = data_frames(lines)
                answered = time.monotonic() - started
        proc.popen.wait(10)
        stopped = time.monotonic() - started
    finally:
        proc.kill()
    # The default graceful period (5 s), then the call's answer is the shutdown error.
    assert rest == [{"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Server shutting down"}}]
    assert 4.5 <= answered < 7
    assert stopped < 8
    assert "Application shutdown complete" in proc.stderr


def call(
    url: str, name: str, seconds: float, *, stream: bool, out: dict[str, httpx.Response], session: str | None = None
) -> threading.Thread:
    """Call the `nap` tool in a thread (2026-07-28, or on a 2025 `session`); with `stream` the reply is SSE."""
    body, headers = modern_request("tools/call", {"name": "nap", "arguments": {"name": name, "seconds": seconds}})
    if session is not None:
        del body["params"]["_meta"]
        headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    if stream:
        body["params"]["_meta"] = {**body["params"].get("_meta", {}), "progressToken": name}

    def run() -> None:
        out[name] = httpx.post(url, json=body, headers=headers, timeout=20)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_run_gives_calls_in_flight_a_graceful_period_then_a_json_rpc_error() -> None:
    port = free_port()
    grace = 2.0
    proc = Proc([sys.executable, str(FIXTURES / "shutdown_app.py"), str(port), str(grace)])
    url = f"http://127.0.0.1:{port}/mcp"
    replies: dict[str, httpx.Response] = {}
    try:
        proc.wait_for_stderr("serving")
        with httpx.Client(timeout=10) as http:
            session = new_session(http, url, "2025-11-25")
        threads = [
            call(url, "quick", 0.3, stream=False, out=replies),
            call(url, "slow", 60, stream=False, out=replies),
            call(url, "slow-sse", 60, stream=True, out=replies),
            call(url, "slow-session", 60, stream=False, out=replies, session=session),
        ]
        for name in ("quick", "slow", "slow-sse", "slow-session"):
            proc.wait_for_stderr(f"started {name}")
        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(15)
        answered = time.monotonic() - started
        proc.popen.wait(10)
        stopped = time.monotonic() - started
    finally:
        proc.kill()

    # Finished within the period: its result.
    assert replies["quick"].status_code == 200
    assert replies["quick"].json()["result"]["content"][0]["text"] == "quick slept 0.3"
    # Cut at the end of the period: a JSON-RPC error, not uvicorn's 500 text.
    slow = replies["slow"]
    assert slow.status_code == 503
    assert slow.headers["content-type"] == "application/json"
    assert slow.json() == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Server shutting down"}}
    # An SSE reply already under way ends with the error as its last event.
    frames = data_frames(iter(replies["slow-sse"].text.splitlines()))
    assert frames[0]["method"] == "notifications/progress"
    assert frames[-1] == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Server shutting down"}}
    # The same on a 2025-11-25 session.
    assert replies["slow-session"].status_code == 503
    assert replies["slow-session"].json() == slow.json()
    assert grace <= answered < grace + 2
    assert stopped < grace + 3
    assert proc.popen.returncode == 0
    assert "Traceback" not in proc.stderr and "CancelledError" not in proc.stderr, proc.stderr


def test_the_cli_flag_sets_the_graceful_period() -> None:
    with http_cli(f"{APP_MODULE}:server", "--transport", "http", "--graceful-shutdown", "0.5") as (proc, base):
        replies: dict[str, httpx.Response] = {}
        thread = call(f"{base}/mcp", "slow", 60, stream=False, out=replies)
        proc.wait_for_stderr("started slow")
        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        thread.join(15)
        answered = time.monotonic() - started
        proc.popen.wait(10)
    assert replies["slow"].json()["error"] == {"code": -32603, "message": "Server shutting down"}
    assert 0.5 <= answered < 2.5  # the default period is 5 s
    assert proc.popen.returncode == 0


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--graceful-shutdown", "2"], "--graceful-shutdown applies to the HTTP transports"),
        (["--transport", "http", "--graceful-shutdown", "-1"], "--graceful-shutdown must be 0 seconds or more; got -1"),
    ],
)
def test_the_cli_refuses_a_graceful_period_it_cannot_use(args: list[str], says: str) -> None:
    completed = run_cli("run", f"{APP_MODULE}:server", *args)
    assert completed.returncode != 0
    assert says in completed.stderr, completed.stderr
