"""The Starlette app `MCPServer.http_app()` builds: the endpoint route, custom routes, auth, backend.

`MCPServer` keeps the signature and the docstring; the assembly lives here so that the server
module stays about registering things.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi.asgi.cors import cors_origins
from mcp_asgi.asgi.lifespan import SharedLifespan
from mcp_asgi.asgi.security import HostOriginGuard, guarded_route
from mcp_asgi.middleware import not_asgi_middleware
from mcp_asgi.scaleout import backend_from_environment, check_secret, default_backend
from mcp_asgi.transports.events import EventStore
from mcp_asgi.transports.sessions import SessionStore
from mcp_asgi.transports.streamable_http import StreamableHTTPEndpoint

if TYPE_CHECKING:
    from mcp_asgi.auth.bearer import BearerAuth, HostAuth
    from mcp_asgi.backend import Backend
    from mcp_asgi.server import MCPServer

try:
    from starlette._utils import get_route_path
except ImportError:  # pragma: no cover - older Starlette

    def get_route_path(scope: Scope) -> str:
        path: str = scope["path"]
        root = scope.get("root_path", "")
        return path[len(root) :] if root and path.startswith(root) else path


HTTP_TRANSPORTS = ("http", "streamable-http")


class EndpointRoute(BaseRoute):
    """Matches the MCP path with or without a trailing slash, so neither answers 307."""

    def __init__(self, path: str, endpoint: ASGIApp, *, name: str | None = None) -> None:
        if path != "/" and not path.startswith("/"):
            raise ValueError(f"`path` must start with '/', got {path!r}")
        self.path = path.rstrip("/")
        self.endpoint = endpoint
        self.name = name

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.FULL, {}) if self.matches_http(scope) else (Match.NONE, {})

    def matches_http(self, scope: Scope) -> bool:
        return scope["type"] == "http" and get_route_path(scope).rstrip("/") == self.path

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        from starlette.datastructures import URLPath

        if name == self.name and not path_params:
            return URLPath(self.path or "/")
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


class MCPApp(Starlette):
    """The Starlette app `http_app()` returns. It remembers which app mounted it."""

    mcp_server: MCPServer
    # The MCP endpoint's route while its requests may go straight to it (see `_direct_route`).
    _direct: EndpointRoute | None = None
    _handlers: tuple[dict[Any, Any], dict[int, Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette overwrites scope["app"]; keep the host's for `ctx.app` first.
        if "mcp_asgi.host_app" not in scope:
            scope["mcp_asgi.host_app"] = scope.get("app", self)
        direct = self._direct
        if direct is not None and direct.matches_http(scope) and self.router.routes[0] is direct:
            # What the skipped layers would have put in the scope, for `ctx.request` and the tools' code.
            scope["app"] = self
            if "router" not in scope:
                scope["router"] = self.router
            scope["starlette.exception_handlers"] = self._handlers
            await direct.endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        self._direct = self._direct_route(stack)
        return stack

    def _direct_route(self, stack: ASGIApp) -> EndpointRoute | None:
        """The endpoint route, if nothing in Starlette's stack can act on the endpoint's requests.

        The MCP endpoint answers every error itself (as JSON-RPC, with its status), so when the
        app has no middleware and no exception handlers of the user's, the two layers Starlette
        puts around the router only pass its requests through: about a tenth of a trivial tool
        call's cost, measured. An exception that escapes anyway reaches the server (or the host
        app), which answers 500 as Starlette's error layer would have, and logs it. In debug mode
        the stack stays: its traceback page is the point of debug.
        """
        routes = self.router.routes
        exceptions = getattr(stack, "app", None)
        if (
            self.debug
            or self.user_middleware
            or self.exception_handlers
            or getattr(self, "max_body_size", None) is not None
            or not isinstance(stack, ServerErrorMiddleware)
            or not isinstance(exceptions, ExceptionMiddleware)
            or exceptions.app is not self.router
            or not routes
            or not isinstance(routes[0], EndpointRoute)
        ):
            return None
        self._handlers = (exceptions._exception_handlers, exceptions._status_handlers)
        return routes[0]

    @property
    def lifespan(self) -> SharedLifespan:
        """The server's lifespan, for `FastAPI(lifespan=mcp_app.lifespan)`."""
        return self.mcp_server._lifespan

    def __mcp_asgi_app__(self) -> ASGIApp:
        return self


def build_http_app(
    server: MCPServer,
    *,
    path: str | None,
    transport: str,
    middleware: Sequence[Middleware] | None,
    json_response: bool,
    stateless: bool,
    session_store: SessionStore | None,
    keepalive_interval: float,
    max_body_size: int,
    debug: bool,
    message_path: str,
    allowed_hosts: Sequence[str] | None,
    allowed_origins: Sequence[str] | None,
    event_store: EventStore | None,
    sse_retry_interval: float,
    body_timeout: float,
    max_in_flight: int,
    backend: Backend | None,
    auth: BearerAuth | HostAuth | None,
    dependencies: Sequence[Any] | None,
) -> MCPApp:
    """`server.http_app(...)`: see its docstring for what each option means."""
    if transport not in (*HTTP_TRANSPORTS, "sse"):
        raise ValueError(f"`transport` must be one of {', '.join(HTTP_TRANSPORTS)}, sse; got {transport!r}")
    if keepalive_interval <= 0:
        raise ValueError(f"`keepalive_interval` must be a positive number of seconds; got {keepalive_interval!r}")
    # subscriptions/listen streams run in the core, which reads the server's interval: the app's
    # setting reaches them through it (with several apps of one server, the last one built sets it).
    server.keepalive_interval = keepalive_interval
    path = ("/sse" if transport == "sse" else "/mcp") if path is None else path
    if not path.startswith("/"):
        raise ValueError(f"`path` must start with '/', got {path!r}")
    if middleware is not None and not all(isinstance(m, Middleware) for m in middleware):
        raise not_asgi_middleware(middleware)
    # DNS-rebinding protection: automatic on localhost, or the lists given; origins the CORS
    # middleware allows are allowed too.
    guard = HostOriginGuard(allowed_hosts, allowed_origins, cors=cors_origins(middleware or ()))
    backend = resolve_backend(server, backend, session_store, event_store)
    gate, endpoint_gate = gates(checked_auth(auth) or server.auth, dependencies, path)
    endpoint: Any
    if transport == "sse":
        from mcp_asgi.transports.sse import build_sse_routes

        # The whole backend: its store holds the sessions, its bus forwards POSTs to the stream's worker.
        endpoint, routes = build_sse_routes(
            server,
            path,
            message_path,
            json_response=json_response,
            stateless=stateless,
            backend=backend,
            keepalive_interval=keepalive_interval,
            max_body_size=max_body_size,
            guard=guard,
            body_timeout=body_timeout,
            max_in_flight=max_in_flight,
            gate=endpoint_gate,
        )
    else:
        endpoint = StreamableHTTPEndpoint(
            server,
            json_response=json_response,
            stateless=stateless,
            keepalive_interval=keepalive_interval,
            max_body_size=max_body_size,
            guard=guard,
            backend=backend,
            sse_retry_interval=sse_retry_interval,
            body_timeout=body_timeout,
            max_in_flight=max_in_flight,
        )
        endpoint.gate = endpoint_gate
        routes = [EndpointRoute(path, endpoint, name="mcp")]
    server._sweeper.watch(endpoint.sessions)
    server._backends.add(backend)
    routes = [*routes, *custom_routes(server, guard, gate)]
    if gate is not None:
        from mcp_asgi.auth.metadata import app_routes

        routes = [*routes, *app_routes(gate.auth, path)]
    app = MCPApp(debug=debug, routes=routes, middleware=list(middleware or ()), lifespan=server._lifespan)
    app.mcp_server = server
    app.state.mcp_server = server
    app.state.fastmcp_server = server
    app.state.mcp_endpoint = endpoint
    app.state.mcp_auth_gate = gate
    if gate is not None:
        gate.app = app
    return app


def gates(auth: BearerAuth | HostAuth | None, dependencies: Sequence[Any] | None, path: str) -> tuple[Any, Any]:
    """The auth gate, and what the endpoint checks per request: that gate, then any FastAPI dependencies.

    Custom routes that opt in (`auth=True`) get the auth gate alone.
    """
    gate = None
    if auth is not None:
        from mcp_asgi.auth.bearer import AuthGate

        gate = AuthGate(auth, path)
    if not dependencies:
        return gate, gate
    from mcp_asgi.dependencies import DependencyGate

    return gate, DependencyGate(dependencies, auth=gate)


def resolve_backend(
    server: MCPServer, backend: Backend | None, session_store: SessionStore | None, event_store: EventStore | None
) -> Backend:
    """The app's backend: its own, the server's, the environment's, or in memory around the stores given."""
    if backend is not None or server.backend is not None:
        if session_store is not None or event_store is not None:
            raise ValueError("pass `backend=` or `session_store=`/`event_store=`, not both (a backend has its own)")
        chosen = backend if backend is not None else server.backend
    elif session_store is None and event_store is None and (env := environment_backend(server)) is not None:
        chosen = env
    else:
        return default_backend(session_store, event_store)
    assert chosen is not None
    check_secret(chosen, server._secret_given)
    return chosen


def environment_backend(server: MCPServer) -> Backend | None:
    # One per server, shared by all its apps: one connection pool per worker.
    if not hasattr(server, "_env_backend"):
        server._env_backend = backend_from_environment()
    return server._env_backend


def custom_routes(server: MCPServer, guard: HostOriginGuard, gate: Any) -> list[Route]:
    """The server's custom routes for one app: behind the guard and, when they opted in, the auth gate."""
    built = []
    for route, guarded, authenticated in server._custom_routes:
        if authenticated:
            if gate is None:
                raise ValueError(
                    f"custom route {route.path!r} asks for auth=True, but the server has no auth: "
                    "pass auth=BearerAuth(...) or HostAuth(...) to MCPServer or http_app"
                )
            from mcp_asgi.auth.bearer import protected

            route = copy.copy(route)
            route.app = protected(gate, route.app)
        built.append(guarded_route(guard, route) if guarded else route)
    return built


def checked_auth(auth: Any) -> BearerAuth | HostAuth | None:
    """`auth` if it is BearerAuth/HostAuth/None; a TypeError that says what to pass otherwise."""
    if auth is None:
        return None
    from mcp_asgi.auth.bearer import check_auth

    return check_auth(auth)
