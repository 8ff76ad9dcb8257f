"""Media given by path (`Image/Audio/FileContent(path=...)`) is read off the event loop."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_asgi import FileContent, Image, MCPServer, PromptMessage
from tests.conftest import serve
from tests.http_helpers import modern_request

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")


def build(pipe: Path) -> MCPServer:
    mcp = MCPServer("files")

    @mcp.tool
    async def picture() -> Image:
        """An image read from a path that blocks until someone writes it."""
        return Image(path=pipe)

    @mcp.tool
    async def attachment():  # no return annotation: the list is content, not structured output
        return ["here it is", FileContent(path=pipe, name="report.png")]

    @mcp.prompt
    async def show() -> PromptMessage:
        return PromptMessage(Image(path=pipe))

    return mcp


def release(pipe: Path) -> threading.Thread:
    """Write the pipe from a thread: its open() returns once the server opens the pipe to read it."""

    def write() -> None:
        with open(pipe, "wb") as sink:
            sink.write(PNG)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("tools/call", {"name": "picture", "arguments": {}}),
        ("tools/call", {"name": "attachment", "arguments": {}}),
        ("prompts/get", {"name": "show", "arguments": {}}),
    ],
)
async def test_a_blocking_file_read_leaves_the_loop_free(tmp_path: Path, method: str, params: dict) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with serve(build(pipe).http_app()) as base:
        url = f"{base}/mcp"
        answers: dict[str, httpx.Response] = {}
        writer = None
        try:
            async with httpx.AsyncClient(timeout=10) as http, anyio.create_task_group() as group:

                async def slow_call() -> None:
                    body, headers = modern_request(method, params, request_id=1)
                    answers["call"] = await http.post(url, json=body, headers=headers)

                group.start_soon(slow_call)
                await anyio.sleep(0.3)  # the call is now opening the pipe, which blocks until it is written
                body, headers = modern_request("tools/list", request_id=2)
                # A loop stuck in the file read would answer nothing until the pipe is written.
                listing = await http.post(url, json=body, headers=headers, timeout=3)
                assert [tool["name"] for tool in listing.json()["result"]["tools"]] == ["picture", "attachment"]
                assert "call" not in answers
                writer = release(pipe)
        finally:
            if writer is None:
                writer = release(pipe)  # unblock a stuck server so the test ends
            writer.join(5)
    result = answers["call"].json()["result"]
    blocks = result["content"] if method == "tools/call" else [m["content"] for m in result["messages"]]
    media = [block for block in blocks if block["type"] in ("image", "resource")]
    assert len(media) == 1
    assert media[0].get("mimeType", media[0].get("resource", {}).get("mimeType")) == "image/png"
