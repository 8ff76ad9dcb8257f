"""Serve an `MCPServer` on its own: over stdio, or over HTTP with uvicorn.

`MCPServer.run()` / `run_async()` and the `mcp-asgi` command line both land here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio
import anyio.abc
import uvicorn

from mcp_asgi import shutdown as host_shutdown
from mcp_asgi.shutdown import DEFAULT_GRACEFUL_PERIOD

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer

logger = logging.getLogger("mcp_asgi")

TRANSPORTS = ("stdio", "http", "streamable-http", "sse")
# Keyword arguments of `run()` that configure the app rather than uvicorn.
APP_OPTIONS = frozenset(
    {
        "stateless",
        "json_response",
        "message_path",
        "middleware",
        "session_store",
        "keepalive_interval",
        "max_body_size",
        "debug",
        "allowed_hosts",
        "allowed_origins",
        "event_store",
        "sse_retry_interval",
        "max_in_flight",
        "backend",
        "auth",
    }
)
# Calls still running when shutdown begins get this long to finish, then a JSON-RPC error.
GRACEFUL_SHUTDOWN_SECONDS = DEFAULT_GRACEFUL_PERIOD
# uvicorn cuts what is still open this long after our own graceful period: time to write the errors.
UVICORN_MARGIN_SECONDS = 2.0


class RunError(RuntimeError):
    """The server could not start; the message says why and what to do."""


def run(server: MCPServer, transport: str = "stdio", **options: Any) -> None:
    """Serve until the input ends (stdio), or until Ctrl-C or SIGTERM (HTTP)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            f"{type(server).__name__}.run() cannot start an event loop inside the one already running here; "
            f"use `await mcp.run_async({transport!r})` instead"
        )
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(lambda: run_async(server, transport, **options))


async def run_async(
    server: MCPServer,
    transport: str = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str | None = None,
    log_level: str | None = None,
    announce: bool = True,
    graceful_shutdown: float | None = None,
    **options: Any,
) -> None:
    """`run()` for code already inside an event loop.

    Over HTTP, SIGTERM or Ctrl-C ends open streams at once and gives calls still running
    `graceful_shutdown` seconds (default 5) to finish; the rest get a JSON-RPC error.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"`transport` must be one of {', '.join(TRANSPORTS)}; got {transport!r}")
    configure_logging(log_level)
    app_options = {key: options.pop(key) for key in list(options) if key in APP_OPTIONS}
    if graceful_shutdown is not None:
        options["graceful_shutdown"] = graceful_shutdown
    if transport == "stdio":
        # The one app option that means something here: the longest line (message) accepted.
        max_line_size = app_options.pop("max_body_size", None)
        max_in_flight = app_options.pop("max_in_flight", None)
        if options or app_options:
            unknown = ", ".join(sorted({*options, *app_options}))
            raise TypeError(f"stdio takes no HTTP options (got {unknown}); pass transport='http' to serve HTTP")
        await serve_stdio(server, announce=announce, max_line_size=max_line_size, max_in_flight=max_in_flight)
    else:
        await serve_http(
            server,
            transport,
            host=host,
            port=port,
            path=path,
            log_level=log_level,
            app_options=app_options,
            announce=announce,
            **options,
        )


def configure_logging(log_level: str | None) -> None:
    """Send log records to stderr (never stdout: stdio owns it) at the requested level."""
    level = getattr(logging, log_level.upper(), None) if log_level else logging.WARNING
    if not isinstance(level, int):
        raise ValueError(f"`log_level` must be debug, info, warning, error or critical; got {log_level!r}")
    # A no-op when the program configured logging itself.
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if log_level:
        logging.getLogger("mcp_asgi").setLevel(level)


def _say(message: str) -> None:
    print(f"mcp-asgi: {message}", file=sys.stderr, flush=True)


# stdio.
@contextlib.contextmanager
def _protocol_stdout() -> Iterator[BinaryIO]:
    """Keep stdout for protocol messages only: anything else writing to fd 1 lands on stderr.

    `print()` in a tool, a logging handler bound to `sys.stdout`, a C library or a
    child process would otherwise corrupt the stream the client parses.
    """
    try:
        sys.stdout.flush()
        protocol_fd = os.dup(1)
    except (AttributeError, OSError, ValueError):  # no real fd 1 (embedded, captured)
        yield sys.stdout.buffer
        return
    os.dup2(2, 1)
    protocol = os.fdopen(protocol_fd, "wb", closefd=False)
    try:
        yield protocol
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            protocol.flush()
        os.dup2(protocol_fd, 1)
        os.close(protocol_fd)


async def serve_stdio(
    server: MCPServer, *, announce: bool = True, max_line_size: int | None = None, max_in_flight: int | None = None
) -> None:
    """Serve over stdin/stdout inside the server's lifespan; EOF or SIGTERM ends it."""
    from mcp_asgi.protocol.versions import SUPPORTED_VERSIONS
    from mcp_asgi.transports.stdio import StdioTransport

    with _protocol_stdout() as stdout:
        async with server._lifespan(None), anyio.create_task_group() as group:
            # Started before the announcement: a client may signal as soon as it reads that line.
            await group.start(_cancel_on_signal, group.cancel_scope)
            if announce:
                _say(f"serving {server.name!r} over stdio (protocol {', '.join(SUPPORTED_VERSIONS)})")
            limit = {} if max_line_size is None else {"max_line_size": max_line_size}
            if max_in_flight is not None:
                limit["max_in_flight"] = max_in_flight
            await StdioTransport(server, stdout=stdout, **limit).run()
            group.cancel_scope.cancel()


async def _cancel_on_signal(
    scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    if threading.current_thread() is not threading.main_thread():
        task_status.started()
        return
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                scope.cancel()
                return
    except NotImplementedError:  # Windows: Ctrl-C still raises KeyboardInterrupt
        task_status.started()
        return


# HTTP.
def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a busy port is a clear error rather than a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        import errno

        if exc.errno == errno.EADDRINUSE:
            raise RunError(
                f"port {port} on {host} is already in use; stop what is using it or pick another port (--port)"
            ) from None
        raise RunError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host and --port") from None
    sock.set_inheritable(True)
    return sock


class _UvicornServer(uvicorn.Server):
    """uvicorn that ends MCP streams when shutdown starts, and returns instead of re-raising the signal."""

    def __init__(
        self, config: uvicorn.Config, on_shutdown: list[Callable[[], None]], announcement: str | None = None
    ) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown
        self._announcement = announcement

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Announce only once the socket accepts connections: clients act on this line.
        if self.started and self._announcement:
            _say(self._announcement)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn waits for open responses to finish; long-lived SSE streams never would.
        # (The signal already said so when a stream or the lifespan had armed it; this covers
        # `should_exit` set by code, and calls in flight with no stream open.)
        host_shutdown.begin()
        for hook in self._on_shutdown:
            hook()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


async def serve_http(
    server: MCPServer,
    transport: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str | None = None,
    log_level: str | None = None,
    app_options: dict[str, Any] | None = None,
    announce: bool = True,
    graceful_shutdown: float = GRACEFUL_SHUTDOWN_SECONDS,
    **uvicorn_options: Any,
) -> None:
    """Serve `server.http_app(...)` with uvicorn until Ctrl-C or SIGTERM."""
    if not isinstance(graceful_shutdown, (int, float)) or graceful_shutdown < 0:
        raise ValueError(f"`graceful_shutdown` must be a number of seconds >= 0; got {graceful_shutdown!r}")
    app_options = dict(app_options or {})
    if transport == "sse":
        path = "/sse" if path is None else path
        app = server.http_app(path=path, transport="sse", **app_options)
    else:
        path = "/mcp" if path is None else path
        app = server.http_app(path=path, transport="http", **app_options)
    sock = bind_socket(host, port)
    port = sock.getsockname()[1]
    uvicorn_options.setdefault("timeout_graceful_shutdown", graceful_shutdown + UVICORN_MARGIN_SECONDS)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level or "warning", **uvicorn_options)
    announcement = None
    if announce:
        shown = f"[{host}]" if ":" in host else host
        base = f"http://{shown}:{port}"
        if transport == "sse":
            message_path = app_options.get("message_path", "/messages/")
            announcement = f"serving {server.name!r} over legacy HTTP+SSE at {base}{path} (messages: {message_path})"
        else:
            announcement = f"serving {server.name!r} over Streamable HTTP at {base}{path}"
    endpoint = app.state.mcp_endpoint
    server_ = _UvicornServer(
        config, on_shutdown=[endpoint.broker.close_all, server._hub.close], announcement=announcement
    )
    host_shutdown.configure(graceful_shutdown)
    try:
        await server_.serve(sockets=[sock])
    finally:
        sock.close()
