"""The README's "Talk to the running example" commands work against examples/fastapi_app, as pasted."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.procs import run_example

ROOT = Path(__file__).resolve().parent.parent
README_URL = "http://127.0.0.1:8000"


def section_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Talk to the running example\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"^```{language}\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def example_base():
    with run_example("fastapi_app/app.py", "/mcp", "/api/notes") as base:
        yield base


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's commands need curl")
def test_readme_curl_calls(example_base: str) -> None:
    [script] = section_blocks("bash")
    assert README_URL in script
    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(README_URL, example_base)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 0, completed.stderr
    head, _, rest = completed.stdout.partition("\n\n")  # text mode turned curl's CRLFs into LFs
    assert head.startswith("HTTP/1.1 200") and "mcp-session-id: " in head.lower()
    # Neither reply ends with a newline: the two JSON bodies arrive back to back.
    decoder = json.JSONDecoder()
    initialized, end = decoder.raw_decode(rest)
    called, end = decoder.raw_decode(rest, end)
    assert rest[end:].strip() == ""
    assert initialized["result"]["protocolVersion"] == "2025-11-25"
    assert initialized["result"]["serverInfo"]["name"] == "Notes"
    # The number depends on notes other tests added to the shared example.
    assert called["result"]["structuredContent"]["text"] == "buy milk"
    assert called["result"]["resultType"] == "complete"


def test_readme_official_client_snippet(example_base: str) -> None:
    [code] = section_blocks("python")
    assert README_URL in code
    completed = subprocess.run(
        [sys.executable, "-c", code.replace(README_URL, example_base)], capture_output=True, text=True, timeout=30
    )
    assert completed.returncode == 0, completed.stderr
    legacy, modern = completed.stdout.splitlines()
    # The example's own tools, then its JSON routes offered as tools (mcp.add_routes).
    tools = "['add_note', 'list_notes', 'app_info', 'get_notes', 'read_note', 'create_note']"
    assert legacy.startswith(f"2025-11-25 {tools} {{'number': ")
    assert legacy.endswith("'text': 'written over 2025-11-25'}")
    assert modern.startswith(f"2026-07-28 {tools} {{'number': ")
    assert modern.endswith("'text': 'written over 2026-07-28'}")
