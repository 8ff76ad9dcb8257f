"""`MCPServer` (alias `FastMCP`): register tools, resources and prompts; serve them."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import Scope

from mcp_asgi import shutdown as host_shutdown
from mcp_asgi.asgi.lifespan import SharedLifespan
from mcp_asgi.components.errors import call_user_code
from mcp_asgi.components.prompts import Prompt
from mcp_asgi.components.resources import Resource, ResourceTemplate, is_template
from mcp_asgi.components.signature import FunctionArguments, caller_namespace
from mcp_asgi.components.tools import Tool, ToolOptions
from mcp_asgi.context import Context
from mcp_asgi.middleware import build_handlers, check_middleware, telemetry_layer
from mcp_asgi.protocol.dispatch import Call, ProtocolCore
from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR, MCPError
from mcp_asgi.protocol.mrtr import STATE_SECRET_ENV, RequestStateCodec
from mcp_asgi.protocol.notifications import ChangeHub
from mcp_asgi.protocol.registry import Registry
from mcp_asgi.scaleout import Backends, check_secret
from mcp_asgi.transports.events import EventStore
from mcp_asgi.transports.sessions import SessionStore
from mcp_asgi.transports.sweeper import SessionSweeper

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from mcp_asgi.auth.bearer import BearerAuth, HostAuth
    from mcp_asgi.backend import Backend
    from mcp_asgi.http_app import MCPApp
    from mcp_asgi.tasks.runner import TaskRunner

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("mcp_asgi")


class _Sent:
    """An awaitable with nothing left to wait for: what a method that already did its work returns."""

    def __await__(self) -> Generator[None, None, None]:
        return iter(())


_SENT = _Sent()


class _Completion:
    def __init__(self, fn: Callable[..., Any], localns: dict[str, Any] | None, mask_error_details: bool) -> None:
        self.arguments = FunctionArguments(fn, model_name="completion_arguments", localns=localns)
        self.fn = fn
        self.mask_error_details = mask_error_details

    async def call(self, ref: dict[str, Any], argument: dict[str, Any], arguments: dict[str, Any], ctx: Any) -> Any:
        kwargs: dict[str, Any] = {}
        names = self.arguments.parameter_names
        for name, value in (("ref", ref), ("argument", argument), ("context", arguments), ("arguments", arguments)):
            if name in names:
                kwargs[name] = value
        what = f"Error completing argument '{argument.get('name')}'"
        return await call_user_code(self.arguments.call, kwargs, ctx, what=what, mask=self.mask_error_details)


class MCPServer:
    """An MCP server: decorate functions to expose them, then serve with `http_app()` or `run()`.

    ```python
    mcp = MCPServer("Demo")

    @mcp.tool
    def add(a: int, b: int) -> int:
        "Add two numbers."
        return a + b

    app = mcp.http_app()   # a Starlette app serving POST/GET/DELETE /mcp
    ```
    """

    def __init__(
        self,
        name: str = "mcp-asgi",
        *,
        version: str = "0.1.0",
        instructions: str | None = None,
        lifespan: Callable[[MCPServer], contextlib.AbstractAsyncContextManager[Any]] | None = None,
        title: str | None = None,
        website_url: str | None = None,
        icons: list[dict[str, Any]] | None = None,
        page_size: int | None = None,
        cache_ttl_ms: int = 0,
        context_class: type[Context] = Context,
        state_secret: str | bytes | None = None,
        mask_error_details: bool = False,
        backend: Backend | None = None,
        auth: BearerAuth | HostAuth | None = None,
        hide_unauthorized: bool = False,
        middleware: Sequence[Any] | None = None,
        telemetry: bool | None = None,
        task_runner: TaskRunner | None = None,
        task_ttl_ms: int | None = 3_600_000,
        task_poll_interval_ms: int = 1000,
        task_shutdown_grace: float = 5.0,
    ) -> None:
        if not isinstance(hide_unauthorized, bool):
            raise TypeError(f"`hide_unauthorized` must be True or False, got {hide_unauthorized!r}")
        if page_size is not None and page_size < 1:
            raise ValueError("`page_size` must be a positive number of items, or None for no pagination")
        if cache_ttl_ms < 0:
            raise ValueError("`cache_ttl_ms` must be >= 0")
        self.name = name
        self.version = version
        self.instructions = instructions
        self.page_size = page_size
        self.cache_ttl_ms = cache_ttl_ms
        self.context_class = context_class
        # True: an unexpected exception reaches the client as "Error calling tool 'x'", its text only the log.
        self.mask_error_details = mask_error_details
        # True: lists over HTTP leave out what the request lacks the scopes for (False: listed, refused on use).
        self.hide_unauthorized = hide_unauthorized
        self.server_info: dict[str, Any] = {"name": name, "version": version}
        if title:
            self.server_info["title"] = title
        if website_url:
            self.server_info["websiteUrl"] = website_url
        if icons:
            self.server_info["icons"] = icons
        # Everything this server offers; the protocol core reads it, worker threads may change it.
        self._registry = Registry()
        # (route, whether the Host/Origin guard applies to it)
        # (route, behind the Host/Origin guard, behind the endpoint's auth)
        self._custom_routes: list[tuple[Route, bool, bool]] = []
        self._user_lifespan = lifespan
        self._lifespan = SharedLifespan(self._run_lifespan, name=f"MCP server {name!r}")
        # Open notification streams (2025 GET streams, 2026 subscriptions/listen).
        self._hub = ChangeHub()
        self.keepalive_interval = 15.0
        # Signs 2026-07-28 requestState; share `state_secret` between workers.
        self._state_codec = RequestStateCodec(state_secret)
        self._secret_given = state_secret is not None or bool(os.environ.get(STATE_SECRET_ENV))
        # Where sessions, events and cross-worker messages live (see mcp_asgi/backend.py); `http_app(backend=)`
        # wins, then this, then MCP_ASGI_REDIS_URL, then an in-memory backend per app.
        self.backend = backend
        if backend is not None:
            check_secret(backend, self._secret_given)
        self._backends = Backends(self._hub)
        # Drops idle sessions of every app built by http_app() while the lifespan runs.
        self._sweeper = SessionSweeper()
        self._core = ProtocolCore(self, self._registry, self._hub, self._state_codec, self._make_context)
        # The tasks extension (mcp_asgi/tasks/, docs/tasks.md): installed before middleware wraps the handlers.
        self.task_runner, self.task_shutdown_grace = install_tasks(
            self, task_runner, task_ttl_ms, task_poll_interval_ms, task_shutdown_grace
        )
        # Who may call the MCP endpoint over HTTP (stdio is unaffected); `http_app(auth=)` wins.
        if auth is not None:
            from mcp_asgi.auth.bearer import check_auth

            auth = check_auth(auth)
        self.auth = auth
        # MCP middleware (mcp_asgi/middleware.py), outermost first; telemetry, when on, is the outermost.
        self._middleware: list[Any] = []
        for layer in [*telemetry_layer(telemetry), *(middleware or ())]:
            self.add_middleware(layer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _make_context(self, call: Call) -> Context:
        return self.context_class(self, call)

    def add_middleware(self, middleware: Any) -> Any:
        """Add an MCP middleware (see `mcp_asgi.middleware`) inside those already added; returns it.

        ASGI middleware goes to `http_app(middleware=[Middleware(...)])` instead.
        """
        check_middleware(middleware)
        self._middleware.append(middleware)
        layers = tuple(self._middleware)
        self._core.wrap_handlers(
            lambda handlers: build_handlers(self._core, handlers, layers, mask=lambda: self.mask_error_details)
        )
        return middleware

    @property
    def middleware(self) -> tuple[Any, ...]:
        """The MCP middleware, outermost first (the telemetry layer first when it is on)."""
        return tuple(self._middleware)

    @property
    def _tools(self) -> dict[str, Tool]:
        """The registered tools by name (a copy)."""
        return self._registry.table("tools")

    # Registration.
    def tool(self, fn: F | None = None, /, **options: Unpack[ToolOptions]) -> Any:
        """Register a function as a tool: `@mcp.tool`, `@mcp.tool()` or `@mcp.tool(name=...)`.

        The options (`name`, `title`, `description`, `annotations`, `icons`, `meta`,
        `input_schema`, `output_schema`, `structured_output`, `scopes`, `run_in_thread`) are
        `ToolOptions`. `scopes=["notes:write"]`: an HTTP request must be granted them, else 403.
        `run_in_thread=False`: a plain `def` tool that returns at once runs on the event loop.
        """
        if isinstance(fn, str):
            raise TypeError("Use @mcp.tool(name='...') to name a tool; the first argument is the function")
        localns = caller_namespace()

        def register(func: F) -> F:
            self.add_tool(Tool(func, localns=localns, **options))
            return func

        return register(fn) if fn is not None else register

    def add_tool(self, tool: Tool) -> Tool:
        """Register a `Tool`; safe from any thread, clients listening for list changes are told."""
        tool.mask_error_details = self.mask_error_details
        self._registry.add("tools", tool.name, tool)
        self._hub.publish(("tools",))
        return tool

    def remove_tool(self, name: str) -> None:
        """Remove a tool; clients listening for list changes are told."""
        if not self._registry.remove("tools", name):
            raise KeyError(f"No tool named {name!r}")
        self._hub.publish(("tools",))

    def remove_resource(self, uri: str) -> None:
        """Remove a resource or resource template by its URI (template)."""
        if not self._registry.remove("resources", uri) and not self._registry.remove("templates", uri):
            raise KeyError(f"No resource or template {uri!r}")
        self._hub.publish(("resources",))

    def remove_prompt(self, name: str) -> None:
        if not self._registry.remove("prompts", name):
            raise KeyError(f"No prompt named {name!r}")
        self._hub.publish(("prompts",))

    def notify_resource_updated(self, uri: str) -> Awaitable[None]:
        """Tell clients subscribed to `uri` that it changed (`notifications/resources/updated`).

        Sent at once, from any thread: a sync tool calls it plainly, async code may `await` it.
        """
        self._hub.publish(("resource", uri))
        return _SENT

    def resource(
        self,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        annotations: dict[str, Any] | None = None,
        icons: list[dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
        size: int | None = None,
        scopes: Sequence[str] | set[str] | None = None,
    ) -> Callable[[F], F]:
        """Register a resource at `uri`; a URI with `{param}` parts makes a resource template.

        `scopes=["files:read"]`: an HTTP request must be granted them to read it, else 403.
        """
        if not isinstance(uri, str) or callable(uri):
            raise TypeError("@mcp.resource needs the URI: @mcp.resource('data://config')")
        localns = caller_namespace()

        def register(func: F) -> F:
            options = dict(
                name=name,
                title=title,
                description=description,
                mime_type=mime_type,
                annotations=annotations,
                icons=icons,
                meta=meta,
                localns=localns,
                mask_error_details=self.mask_error_details,
                scopes=scopes,
            )
            if is_template(uri):
                self._registry.add("templates", uri, ResourceTemplate(func, uri, **options))
            else:
                self._registry.add("resources", uri, Resource(func, uri, size=size, **options))
            self._hub.publish(("resources",))
            return func

        return register

    def prompt(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        icons: list[dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
        scopes: Sequence[str] | set[str] | None = None,
    ) -> Any:
        """Register a prompt: `@mcp.prompt`, `@mcp.prompt()` or `@mcp.prompt(name=...)`.

        `scopes=["reports:read"]`: an HTTP request must be granted them to get it, else 403.
        """
        if isinstance(fn, str):
            raise TypeError("Use @mcp.prompt(name='...') to name a prompt; the first argument is the function")
        localns = caller_namespace()

        def register(func: F) -> F:
            prompt = Prompt(
                func,
                name=name,
                title=title,
                description=description,
                icons=icons,
                meta=meta,
                localns=localns,
                mask_error_details=self.mask_error_details,
                scopes=scopes,
            )
            self._registry.add("prompts", prompt.name, prompt)
            self._hub.publish(("prompts",))
            return func

        return register(fn) if fn is not None else register

    def completion(self, fn: F | None = None, /) -> Any:
        """Register the completion handler: `fn(ref, argument, context) -> list[str]`.

        `ref` is the prompt or resource-template reference, `argument` has `name` and
        `value`, `context` the arguments already filled in. Any may be left out.
        """

        localns = caller_namespace()

        def register(func: F) -> F:
            self._registry.completion = _Completion(func, localns, self.mask_error_details)
            return func

        return register(fn) if fn is not None else register

    def custom_route(
        self,
        path: str,
        methods: Sequence[str] | None = None,
        *,
        name: str | None = None,
        guard: bool = True,
        auth: bool = False,
    ) -> Callable[[F], F]:
        """Serve a plain Starlette endpoint beside the MCP endpoint (and under its mount prefix).

        It is behind the same Host/Origin guard as the endpoint; `guard=False` serves it to
        any Host and Origin (a health check probed under an internal name, say). It is public
        unless `auth=True`: then it needs what the endpoint's `auth=` needs, and its request
        carries the same `user`, `auth` and access token.
        """

        def register(func: F) -> F:
            route = Route(path, func, methods=list(methods) if methods else None, name=name)
            self._custom_routes.append((route, guard, auth))
            return func

        return register

    # A FastAPI app's routes as tools (mcp_asgi/fastapi/, which imports FastAPI only when called).
    def add_routes(
        self,
        app: Any,
        include_operations: Sequence[str] | None = None,
        exclude_operations: Sequence[str] | None = None,
        include_tags: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
        forward_headers: Sequence[str] = ("authorization", "cookie"),
        *,
        max_response_bytes: int = 1024 * 1024,
    ) -> list[Tool]:
        """Offer the FastAPI app's routes (as they are now) as tools; see `mcp_asgi.fastapi.add_routes`."""
        from mcp_asgi.fastapi.routes import add_routes

        return add_routes(
            self,
            app,
            include_operations,
            exclude_operations,
            include_tags,
            exclude_tags,
            forward_headers,
            max_response_bytes=max_response_bytes,
        )

    @classmethod
    def from_fastapi(
        cls,
        app: Any,
        name: str | None = None,
        *,
        include_operations: Sequence[str] | None = None,
        exclude_operations: Sequence[str] | None = None,
        include_tags: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
        forward_headers: Sequence[str] = ("authorization", "cookie"),
        max_response_bytes: int = 1024 * 1024,
        **server_options: Any,
    ) -> MCPServer:
        """A server (named after the app's title) whose tools are the app's routes; it runs the app's lifespan.

        `server_options` go to `MCPServer(...)`; a `lifespan=` there runs after the app's.
        """
        from mcp_asgi.fastapi.routes import server_from_fastapi

        route_options = dict(
            include_operations=include_operations,
            exclude_operations=exclude_operations,
            include_tags=include_tags,
            exclude_tags=exclude_tags,
            forward_headers=forward_headers,
            max_response_bytes=max_response_bytes,
        )
        return server_from_fastapi(cls, app, name, route_options, **server_options)

    # Lifespan.
    @contextlib.asynccontextmanager
    async def _run_lifespan(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        # Hear of the host's SIGTERM before it waits on our streams (see mcp_asgi/shutdown.py).
        host_shutdown.arm()
        await self._start_backends()
        await self.task_runner.start(self)
        try:
            async with self._sweeper.running():
                try:
                    if self._user_lifespan is None:
                        yield {}
                        return
                    async with self._user_lifespan(self) as state:
                        yield dict(state) if isinstance(state, dict) else ({} if state is None else {"lifespan": state})
                finally:
                    # Shutting down: end open notification streams so nothing holds the server open.
                    self._hub.close()
        finally:
            try:
                # Before the backends close: tasks cut short are marked failed in the task store.
                await self.task_runner.close(self.task_shutdown_grace)
            finally:
                await self._backends.close()

    async def _start_backends(self) -> None:
        await self._backends.start(self._secret_given)

    @property
    def lifespan_state(self) -> dict[str, Any]:
        return self._lifespan.state

    async def ensure_started(self, scope: Scope) -> None:
        """Start the server's lifespan on first use when no host ran it (it logs how to wire it).

        A lifespan that fails to start is a 503 with a JSON-RPC error, never a bare 500.
        The backends are opened here too when no lifespan opened them (a host that runs none).
        """
        if not self._backends.started and not self._lifespan.running:
            try:
                await self._start_backends()
            except MCPError:
                raise
            except Exception as exc:  # a missing state secret, an unreachable Redis: say so, answer 503
                logger.error("The backend of %r failed to start: %s", self, exc)
                raise MCPError(INTERNAL_ERROR, f"The MCP server failed to start: {exc}", http_status=503) from None
        if self._user_lifespan is not None and not self._lifespan.running:
            try:
                await self._lifespan.ensure_started(scope.get("mcp_asgi.host_app"))
            except Exception as exc:
                logger.exception("The lifespan of %r failed to start", self)
                raise MCPError(INTERNAL_ERROR, f"The MCP server failed to start: {exc}", http_status=503) from None

    # Serving.
    def http_app(
        self,
        path: str | None = None,
        transport: str = "http",
        middleware: Sequence[Middleware] | None = None,
        json_response: bool = False,
        stateless: bool = False,
        *,
        session_store: SessionStore | None = None,
        keepalive_interval: float = 15.0,
        max_body_size: int = 4 * 1024 * 1024,
        debug: bool = False,
        message_path: str = "/messages/",
        allowed_hosts: Sequence[str] | None = None,
        allowed_origins: Sequence[str] | None = None,
        event_store: EventStore | None = None,
        sse_retry_interval: float = 1.0,
        body_timeout: float = 30.0,
        max_in_flight: int = 64,
        backend: Backend | None = None,
        auth: BearerAuth | HostAuth | None = None,
        dependencies: Sequence[Any] | None = None,
    ) -> MCPApp:
        """A Starlette app serving this server; mount it anywhere or run it with uvicorn.

        `transport="sse"` serves the legacy HTTP+SSE transport instead: the stream at
        `path` (default `/sse`) and the message endpoint at `message_path`. A request
        body that has not fully arrived `body_timeout` seconds after its headers gets 408.
        A session (or legacy SSE stream) runs at most `max_in_flight` requests at once;
        past that a request gets 503 with JSON-RPC error -32000.
        `backend` (default: the server's, else `MCP_ASGI_REDIS_URL`, else in memory) holds sessions,
        events and cross-worker messages; `session_store`/`event_store` fill an in-memory one.
        `auth` (default: the server's) protects every MCP request (see `mcp_asgi.auth`); the app then
        serves the endpoint's RFC 9728 metadata at `/.well-known/oauth-protected-resource{path}`.
        `dependencies` (FastAPI `Depends(...)`) run once per HTTP request to the endpoint, after `auth`,
        as a FastAPI router's do: an `HTTPException` there answers (see `mcp_asgi.dependencies`).
        """
        # Here, not at module level: the HTTP transports were 30% of our `import mcp_asgi`, and a
        # server that is only defined, or served over stdio, does not need them.
        from mcp_asgi.http_app import build_http_app

        return build_http_app(
            self,
            path=path,
            transport=transport,
            middleware=middleware,
            json_response=json_response,
            stateless=stateless,
            session_store=session_store,
            keepalive_interval=keepalive_interval,
            max_body_size=max_body_size,
            debug=debug,
            message_path=message_path,
            allowed_hosts=allowed_hosts,
            allowed_origins=allowed_origins,
            event_store=event_store,
            sse_retry_interval=sse_retry_interval,
            body_timeout=body_timeout,
            max_in_flight=max_in_flight,
            backend=backend,
            auth=auth,
            dependencies=dependencies,
        )

    def run(
        self,
        transport: str = "stdio",
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        path: str | None = None,
        log_level: str | None = None,
        **uvicorn_options: Any,
    ) -> None:
        """Serve on its own: `"stdio"` (default), `"http"`/`"streamable-http"` at `/mcp`, or `"sse"` at `/sse`."""
        from mcp_asgi.runner import run

        run(self, transport, host=host, port=port, path=path, log_level=log_level, **uvicorn_options)

    async def run_async(
        self,
        transport: str = "stdio",
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        path: str | None = None,
        log_level: str | None = None,
        **uvicorn_options: Any,
    ) -> None:
        """`run()` for code already inside an event loop."""
        from mcp_asgi.runner import run_async

        await run_async(self, transport, host=host, port=port, path=path, log_level=log_level, **uvicorn_options)

    def streamable_http_app(self, **options: Any) -> MCPApp:
        """`http_app(transport="http")`, under the name the official SDK uses."""
        return self.http_app(transport="http", **options)

    def __mcp_asgi_app__(self) -> MCPApp:
        """The app `mount()` and `combine_lifespans()` use: the endpoint at the mount root."""
        return self.http_app(path="/")


def __getattr__(name: str) -> Any:
    # `MCPApp` was importable from here; its module is now loaded by the first `http_app()`.
    if name == "MCPApp":
        from mcp_asgi.http_app import MCPApp

        return MCPApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install_tasks(
    server: MCPServer, runner: TaskRunner | None, ttl_ms: int | None, poll_interval_ms: int, grace: float
) -> tuple[TaskRunner, float]:
    """Check the task options and hook the tasks extension into the server's protocol core."""
    from mcp_asgi.tasks.inprocess import InProcessRunner
    from mcp_asgi.tasks.methods import TaskSupport

    if ttl_ms is not None and (not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms < 1):
        raise ValueError("`task_ttl_ms` must be a positive integer number of milliseconds, or None for no expiry")
    if not isinstance(poll_interval_ms, int) or isinstance(poll_interval_ms, bool) or poll_interval_ms < 1:
        raise ValueError("`task_poll_interval_ms` must be a positive integer number of milliseconds")
    if not isinstance(grace, (int, float)) or grace < 0:
        raise ValueError("`task_shutdown_grace` must be a number of seconds >= 0")
    chosen: TaskRunner = runner if runner is not None else InProcessRunner()
    TaskSupport(server, chosen, ttl_ms=ttl_ms, poll_interval_ms=poll_interval_ms).install(server._core)
    return chosen, float(grace)


FastMCP = MCPServer
