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

from mcp_asgi.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MCPError,
    decode,
    encode,
    error_response,
    request_id_of,
)
from mcp_asgi.transports.conversation import DEFAULT_MAX_IN_FLIGHT, Conversation, check_max_in_flight

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")


# The same default as the HTTP body limit: one line is one message.
DEFAULT_MAX_LINE_SIZE = 4 * 1024 * 1024
# What the reader thread sends in place of a line longer than the limit (then dropped).
_TOO_LONG = None


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
        # Bounded reads either way: an unbounded `readline()` would hold a whole hostile line.
        chunk = os.read(fd, 65536) if fd is not None else source.readline(65536)
        if not chunk:
            return
        yield chunk


def _lines(chunks: Iterator[bytes], max_line_size: int) -> Iterator[bytes | None]:
    """Split chunks into lines in linear time; a line past `max_line_size` becomes one None.

    The None comes as soon as the line grows past the limit, and the rest of that line
    is skipped as it arrives, so memory stays bounded by the limit whatever the client sends.
    """
    parts: list[bytes] = []
    size = 0
    skipping = False
    for chunk in chunks:
        *ends, tail = chunk.split(b"\n")
        for end in ends:
            if skipping:
                skipping = False
            elif size + len(end) > max_line_size:
                yield _TOO_LONG
            else:
                yield b"".join(parts) + end if parts else end
            parts.clear()
            size = 0
        if tail and not skipping:
            size += len(tail)
            if size > max_line_size:
                parts.clear()
                size = 0
                skipping = True
                yield _TOO_LONG
            else:
                parts.append(tail)
    if parts:
        yield b"".join(parts)


def _read_lines(
    source: BinaryIO, sink: MemoryObjectSendStream[bytes | None], token: Any, max_line_size: int
) -> None:
    """Feed lines from a blocking file to the event loop; runs in a daemon thread.

    A daemon thread rather than a worker thread: a read blocked on an idle stdin
    must not keep the process alive after SIGTERM.
    """
    try:
        for line in _lines(_chunks(source), max_line_size):
            anyio.from_thread.run(sink.send, line, token=token)
    except Exception:  # the loop is gone (shutdown) or the stream broke: stop reading
        pass
    finally:
        try:
            anyio.from_thread.run_sync(sink.close, token=token)
        except Exception:
            pass


class StdioTransport:
    """Serve one MCP client over a pair of byte streams (stdin and stdout by default).

    A line longer than `max_line_size` bytes is answered with -32600 and skipped; a request
    while `max_in_flight` are running is answered with -32000 ("Server busy").
    """

    def __init__(
        self,
        server: MCPServer,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        max_line_size: int = DEFAULT_MAX_LINE_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if isinstance(max_line_size, bool) or not isinstance(max_line_size, int) or max_line_size < 1:
            raise ValueError(f"`max_line_size` must be a positive number of bytes, got {max_line_size!r}")
        self.server = server
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.max_line_size = max_line_size
        self.max_in_flight = check_max_in_flight(max_in_flight)
        self._write_lock = anyio.Lock()

    async def run(self) -> None:
        """Answer messages until the input ends; requests still running are let finish."""
        sink, lines = anyio.create_memory_object_stream[bytes | None](16)
        reader = threading.Thread(
            target=_read_lines,
            args=(self.stdin, sink, anyio.lowlevel.current_token(), self.max_line_size),
            name="mcp-asgi stdin reader",
            daemon=True,
        )
        reader.start()
        async with anyio.create_task_group() as group:
            conversation = Conversation(
                self.server, self.write, group, allow_modern=True, max_in_flight=self.max_in_flight
            )
            async with lines:
                async for line in lines:
                    await self._receive(conversation, line)
            conversation.stop_following()
        logger.debug("stdin closed; stdio transport done")

    async def _receive(self, conversation: Conversation, line: bytes | None) -> None:
        if line is _TOO_LONG:
            error = MCPError(INVALID_REQUEST, f"Invalid Request: message line longer than {self.max_line_size} bytes")
            await self.write(error_response(None, error))
            return
        if not line.strip():
            return
        try:
            message = decode(line)
        except MCPError as error:
            await self.write(error_response(None, error))
            return
        try:
            await conversation.receive(message)
        except Exception:
            # One bad message must not end the process (and with it every other call of
            # this client); the request itself, if any, is answered like any internal error.
            logger.exception("Unexpected error handling a message over stdio")
            request_id = request_id_of(message)
            if request_id is not None and isinstance(message, dict) and "method" in message:
                await self.write(error_response(request_id, MCPError(INTERNAL_ERROR, "Internal error")))

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
