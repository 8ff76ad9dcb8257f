"""examples/django_project served by uvicorn: MCP beside Django, the ORM in sync and async tools, Django's user.

Django configures itself once per process, so it never runs in the test process: the server
and the script that writes test data through the ORM are subprocesses, each with its own
SQLite file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.fixtures.hosts import Served, uvicorn_app

ROOT = Path(__file__).resolve().parent.parent
MODES = ["legacy", "2026-07-28"]
ACCEPT = {"accept": "application/json, text/event-stream"}
# The fixture's server runs behind a proxy prefix: Django's URLs must carry it, MCP's path not.
ROOT_PATH = "/site"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = str(tmp_path_factory.mktemp("django") / "library.sqlite3")
    with uvicorn_app("tests.fixtures.django_host_app:app", "--root-path", ROOT_PATH, LIBRARY_DB=db) as served:
        title = f"Written by the test {uuid.uuid4().hex[:8]}"
        seeded = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "fixtures" / "django_seed.py"), title, "alice"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "LIBRARY_DB": db},
            cwd=ROOT,
        )
        assert seeded.returncode == 0, seeded.stderr
        yield {"served": served, "title": title, **json.loads(seeded.stdout)}
        assert "SynchronousOnlyOperation" not in served.proc.stderr


def _with_cookie(url: str, session: str) -> Any:
    http = create_mcp_http_client(headers={"cookie": f"sessionid={session}"})
    return streamable_http_client(url, http_client=http)


async def _call(client: Client, name: str, arguments: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(name, arguments or {})
    assert result.is_error is False, result.content
    structured = result.structured_content
    return structured["result"] if isinstance(structured, dict) and set(structured) == {"result"} else structured


@pytest.mark.parametrize("mode", MODES)
async def test_sync_and_async_tools_read_a_row_written_through_the_orm(site: dict[str, Any], mode: str) -> None:
    served: Served = site["served"]
    async with Client(f"{served.base}/mcp", mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"host_info", "list_books", "find_books", "whoami", "add_book", "runs_in_request_thread"} <= names
        info = await _call(client, "host_info")
        assert info["framework"] == "django"
        assert info["books"] >= 4  # three seeded by the lifespan's first run, one by the test
        assert info["lifespan_running"] is True
        listed = await _call(client, "list_books")  # sync tool, sync ORM
        mine = next(book for book in listed if book["title"] == site["title"])
        assert mine["id"] == site["book_id"]
        # reverse() in a tool gives the project's URL under the root path, not under /mcp.
        assert mine["url"] == f"{ROOT_PATH}/api/books/{site['book_id']}"
        found = await _call(client, "find_books", {"author": "test author"})  # async tool, async ORM
        assert [book["title"] for book in found] == [site["title"]]


@pytest.mark.parametrize("mode", MODES)
async def test_sync_tools_run_in_the_requests_thread_sensitive_executor(site: dict[str, Any], mode: str) -> None:
    async with Client(f"{site['served'].base}/mcp", mode=mode) as client:
        seen = await _call(client, "runs_in_request_thread")
    # In an anyio worker thread the flag set by Django's request_started would be missing.
    assert seen["request_thread"] is True, seen


@pytest.mark.parametrize("mode", MODES)
async def test_the_django_user_of_the_session_cookie_reaches_tools(site: dict[str, Any], mode: str) -> None:
    url = f"{site['served'].base}/mcp"
    async with Client(_with_cookie(url, site["session"]), mode=mode) as client:
        assert await _call(client, "whoami") == {"username": "alice"}  # sync: get_user(ctx)
        added = await _call(client, "add_book", {"title": f"by alice {mode}", "author": "A", "year": 2000})
        assert added["added_by"] == "alice"  # async: await aget_user(ctx)
    async with Client(url, mode=mode) as anonymous:
        assert await _call(anonymous, "whoami") == {"username": None}
        refused = await anonymous.call_tool("add_book", {"title": "t", "author": "a", "year": 1})
        assert refused.is_error is True
        assert "Log in first" in refused.content[0].text
    async with Client(_with_cookie(url, "not-a-session"), mode=mode) as forged:
        assert await _call(forged, "whoami") == {"username": None}


def test_django_routes_still_answer(site: dict[str, Any]) -> None:
    base = site["served"].base
    books = httpx.get(f"{base}/api/books").json()["books"]
    mine = next(book for book in books if book["id"] == site["book_id"])
    assert mine["url"] == f"{ROOT_PATH}/api/books/{site['book_id']}"
    assert httpx.get(f"{base}/api/me", cookies={"sessionid": site["session"]}).json() == {"username": "alice"}
    assert httpx.get(f"{base}/nothing-here").status_code == 404


def test_mcp_path_answers_with_and_without_slash(site: dict[str, Any]) -> None:
    for path in ("/mcp", "/mcp/"):
        response = httpx.post(f"{site['served'].base}{path}", json={}, headers=ACCEPT)
        assert response.status_code == 400, (path, response.status_code)  # the endpoint's, not a 307 or a 404
        assert response.json()["error"]["code"] == -32600
    # A path that only starts with the prefix is Django's.
    assert httpx.post(f"{site['served'].base}/mcpx", json={}).status_code == 404


async def test_lifespan_runs_migrations_and_stops_cleanly(tmp_path: Path) -> None:
    """The documented command on a fresh database: tables and books appear, shutdown is clean."""
    with uvicorn_app("examples.django_project.app:app", LIBRARY_DB=str(tmp_path / "fresh.sqlite3")) as served:
        assert "library: MCP lifespan started" in served.proc.stderr
        async with Client(f"{served.base}/mcp", mode="2026-07-28") as client:
            info = await _call(client, "host_info")
        assert info["books"] == 3 and info["lifespan_running"] is True
        code, log = served.stop()
    # uvicorn exits 0, or (since 0.29) re-raises the SIGTERM it handled once shutdown completed.
    assert code in (0, -signal.SIGTERM), log
    assert "library: MCP lifespan stopped" in log
    assert "Application shutdown complete" in log
    assert "Traceback" not in log and "ASGI 'lifespan' protocol appears unsupported" not in log


def test_runserver_says_mcp_needs_the_asgi_application(tmp_path: Path) -> None:
    from tests.conftest import free_port
    from tests.fixtures.procs import Proc

    port = free_port()
    manage = str(ROOT / "examples" / "django_project" / "manage.py")
    env = {**os.environ, "LIBRARY_DB": str(tmp_path / "runserver.sqlite3"), "PYTHONUNBUFFERED": "1"}
    proc = Proc([sys.executable, manage, "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}"], env=env)
    try:
        deadline = time.monotonic() + 30
        while "uvicorn examples.django_project.app:app" not in (printed := b"".join(proc.stdout).decode()):
            assert proc.popen.poll() is None and time.monotonic() < deadline, printed + proc.stderr
            time.sleep(0.05)
        assert "runserver` serves Django over WSGI" in printed
        # The message comes just before the server binds its port.
        while True:
            try:
                me = httpx.get(f"http://127.0.0.1:{port}/api/me")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        # Django's own pages are served as usual.
        assert me.json() == {"username": None}
        answer = httpx.post(f"http://127.0.0.1:{port}/mcp", json={}, headers=ACCEPT)
        assert answer.status_code == 503
        assert "serves Django over WSGI, which cannot serve MCP" in answer.json()["error"]["message"]
    finally:
        proc.kill()
