"""The stdio transport: newline-delimited JSON-RPC on stdin and stdout.

One process serves one client, in either era or both: a request carrying
`_meta` with a protocol version is served by the 2026-07-28 rules, and an
`initialize` starts a legacy session scoped to the process. Only protocol
messages go to stdout, each written whole under a lock; logs go to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectSendStream

from mcp_asgi.protocol.jsonrpc import MCPError, decode, encode, error_response
from mcp_asgi.transports.conversation import Conversation

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")


def _chunks(source: BinaryIO) -> Iterator[bytes]:
    """Raw reads from the file descriptor when there is one.

    `os.read` holds no lock of the buffered `sys.stdin`: a daemon thread blocked in
    `readline()` would make the interpreter abort at exit while it still waits.
    """
    try:
        fd = source.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    while True:
        chunk = os.read(fd, 65536) if fd is not None else source.readline()
        if not chunk:
            return
        yield chunk


def _read_lines(source: BinaryIO, sink: MemoryObjectSendStream[bytes], token: Any) -> None:
    """Feed lines from a blocking file to the event loop; runs in a daemon thread.

    A daemon thread rather than a worker thread: a read blocked on an idle stdin
    must not keep the process alive after SIGTERM.
    """
    pending = b""
    try:
        for chunk in _chunks(source):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                anyio.from_thread.run(sink.send, line, token=token)
        if pending:
            anyio.from_thread.run(sink.send, pending, token=token)
    except Exception:  # the loop is gone (shutdown) or the stream broke: stop reading
        pass
    finally:
        try:
            anyio.from_thread.run_sync(sink.close, token=token)
        except Exception:
            pass


class StdioTransport:
    """Serve one MCP client over a pair of byte streams (stdin and stdout by default)."""

    def __init__(self, server: MCPServer, *, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        self.server = server
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self._write_lock = anyio.Lock()

    async def run(self) -> None:
        """Answer messages until the input ends; requests still running are let finish."""
        sink, lines = anyio.create_memory_object_stream[bytes](16)
        reader = threading.Thread(
            target=_read_lines,
            args=(self.stdin, sink, anyio.lowlevel.current_token()),
            name="mcp-asgi stdin reader",
            daemon=True,
        )
        reader.start()
        async with anyio.create_task_group() as group:
            conversation = Conversation(self.server, self.write, group, allow_modern=True)
            async with lines:
                async for line in lines:
                    if not line.strip():
                        continue
                    try:
                        message = decode(line)
                    except MCPError as error:
                        await self.write(error_response(None, error))
                        continue
                    await conversation.receive(message)
            conversation.stop_following()
        logger.debug("stdin closed; stdio transport done")

    async def write(self, message: dict[str, Any]) -> None:
        """Write one message as one line; the lock keeps concurrent replies from interleaving."""
        data = encode(message) + b"\n"
        async with self._write_lock:
            try:
                await anyio.to_thread.run_sync(self._write_blocking, data)
            except (BrokenPipeError, ValueError):
                # The client closed our stdout (or it was closed at shutdown): nobody reads replies.
                logger.debug("stdout is closed; dropped a message")

    def _write_blocking(self, data: bytes) -> None:
        self.stdout.write(data)
        self.stdout.flush()
