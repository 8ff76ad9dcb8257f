"""Existing FastAPI routes as MCP tools: `mcp.add_routes(app)` and `MCPServer.from_fastapi(app)`.

The routes are chosen when `add_routes` runs, from the app's route list at that moment: a route
added later, a mounted app (the MCP app itself, say), a WebSocket route and anything FastAPI
leaves out of its OpenAPI document (its docs pages, `include_in_schema=False`) never become
tools by accident.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from mcp_asgi.components.tools import Tool, ToolResult
from mcp_asgi.context import Context
from mcp_asgi.fastapi.calls import RouteCall
from mcp_asgi.fastapi.schemas import UnsupportedRoute, output_schema, route_shape

if TYPE_CHECKING:
    from mcp_asgi.server import MCPServer

__all__ = ["DEFAULT_FORWARD_HEADERS", "DEFAULT_MAX_RESPONSE_BYTES", "add_routes", "server_from_fastapi"]

logger = logging.getLogger("mcp_asgi")

DEFAULT_FORWARD_HEADERS = ("authorization", "cookie")
# 1 MiB of text is already a quarter of a million tokens: more is no use to a model.
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
# Headers that describe the in-process request itself; forwarding the MCP request's would lie.
_NOT_FORWARDABLE = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection", "accept"})
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def add_routes(
    server: MCPServer,
    app: Any,
    include_operations: Iterable[str] | None = None,
    exclude_operations: Iterable[str] | None = None,
    include_tags: Iterable[str] | None = None,
    exclude_tags: Iterable[str] | None = None,
    forward_headers: Iterable[str] = DEFAULT_FORWARD_HEADERS,
    *,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> list[Tool]:
    """Register the FastAPI app's routes on `server` as tools; returns the tools added.

    A route is chosen when it is in the app now, has an OpenAPI operation, its operation id
    is in `include_operations` (when given) and not in `exclude_operations`, and one of its tags
    is in `include_tags` (when given) and none in `exclude_tags`. `forward_headers` of each MCP
    request reach the route; they are never tool arguments.
    """
    if not hasattr(app, "openapi") or not hasattr(getattr(app, "router", None), "routes"):
        raise TypeError(f"add_routes() `app` must be a FastAPI application, got {app!r}")
    include_ops = _names("include_operations", include_operations)
    exclude_ops = _names("exclude_operations", exclude_operations) or set()
    include_tag_set = _names("include_tags", include_tags)
    exclude_tag_set = _names("exclude_tags", exclude_tags) or set()
    forward = frozenset(name.lower() for name in _names("forward_headers", forward_headers) or ())
    if bad := sorted(forward & _NOT_FORWARDABLE):
        raise ValueError(f"add_routes() `forward_headers` cannot include {', '.join(bad)}: the call sets its own")
    if not isinstance(max_response_bytes, int) or max_response_bytes < 1:
        raise ValueError(f"add_routes() `max_response_bytes` must be a positive int, got {max_response_bytes!r}")

    document = app.openapi()
    candidates = _operations(app, document)
    _check_known("include_operations", include_ops, {op["operationId"] for _, _, op in candidates})
    _check_known("include_tags", include_tag_set, {tag for _, _, op in candidates for tag in op.get("tags", ())})

    tools: list[Tool] = []
    taken = set(server._tools)
    for route, method, operation in candidates:
        name = operation["operationId"]
        tags = set(operation.get("tags", ()))
        if (include_ops is not None and name not in include_ops) or name in exclude_ops:
            continue
        if (include_tag_set is not None and not tags & include_tag_set) or tags & exclude_tag_set:
            continue
        if name in taken:
            raise ValueError(f"add_routes(): a tool named {name!r} already exists; exclude_operations=[{name!r}]?")
        try:
            tool = _route_tool(app, route, method, operation, document, forward, max_response_bytes)
        except UnsupportedRoute as exc:
            if include_ops is not None:
                raise ValueError(f"add_routes(): operation {name!r} cannot be a tool: {exc}") from None
            logger.warning("Route %s %s is not offered as a tool: %s", method, route.path_format, exc)
            continue
        taken.add(name)
        tools.append(tool)
    for tool in tools:
        server.add_tool(tool)
    return tools


def _operations(app: Any, document: dict[str, Any]) -> list[tuple[Any, str, dict[str, Any]]]:
    """(route, method, OpenAPI operation) for each API route the app has now, in its order."""
    from fastapi.routing import APIRoute

    paths = document.get("paths") or {}
    found = []
    for route in list(app.router.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            operation = (paths.get(route.path_format) or {}).get(method.lower())
            if isinstance(operation, dict) and isinstance(operation.get("operationId"), str):
                found.append((route, method, operation))
    return found


def _names(argument: str, value: Iterable[str] | None) -> set[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"add_routes() `{argument}` must be a list of strings, got {value!r}")
    return set(value)


def _check_known(argument: str, given: set[str] | None, known: set[str]) -> None:
    if given is not None and (unknown := sorted(given - known)):
        raise ValueError(
            f"add_routes() `{argument}` names {', '.join(map(repr, unknown))}, which no route of the app has "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )


def _route_tool(
    app: Any,
    route: Any,
    method: str,
    operation: dict[str, Any],
    document: dict[str, Any],
    forward: frozenset[str],
    max_response_bytes: int,
) -> Tool:
    from starlette.convertors import PathConvertor

    name = operation["operationId"]
    shape = route_shape(document, operation, forward)
    schema, wrap = output_schema(document, operation) if route.response_model is not None else (None, False)
    call = RouteCall(
        app=app,
        tool_name=name,
        method=method,
        path_format=route.path_format,
        shape=shape,
        slash_params=frozenset(k for k, c in route.param_convertors.items() if isinstance(c, PathConvertor)),
        forward_headers=forward,
        wrap_result=wrap,
        has_output_schema=schema is not None,
        max_response_bytes=max_response_bytes,
        route=route,
    )

    async def call_route(_mcp_asgi_context: Context, **arguments: Any) -> ToolResult:
        return await call(arguments, _mcp_asgi_context)

    summary, description = operation.get("summary"), operation.get("description")
    return Tool(
        call_route,
        name=name,
        title=summary,
        description=description or summary or f"{method} {route.path_format}",
        input_schema=shape.input_schema,
        output_schema=schema,
        annotations={"readOnlyHint": True} if method in _READ_ONLY_METHODS else None,
    )


# The FastAPI apps whose own lifespan is running in this context (their ids).
_RUNNING_APPS: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("mcp_asgi_running_apps")


def _tracked_lifespan(app: Any) -> Callable[[Any], contextlib.AbstractAsyncContextManager[Any]]:
    """The app's lifespan, rewrapped once so anything started inside it knows it is running."""
    router = app.router
    tracked = getattr(router, "_mcp_asgi_tracked_lifespan", None)
    if tracked is not None and router.lifespan_context is tracked:
        return tracked
    original = router.lifespan_context

    @contextlib.asynccontextmanager
    async def tracked_lifespan(target: Any) -> AsyncIterator[Any]:
        token = _RUNNING_APPS.set(_RUNNING_APPS.get(frozenset()) | {id(app)})
        try:
            async with original(target) as state:
                yield state
        finally:
            _RUNNING_APPS.reset(token)

    router.lifespan_context = router._mcp_asgi_tracked_lifespan = tracked_lifespan
    return tracked_lifespan


def server_from_fastapi(
    cls: type[MCPServer], app: Any, name: str | None, route_options: dict[str, Any], **options: Any
) -> MCPServer:
    """`MCPServer.from_fastapi`: a server whose tools are the app's routes and whose lifespan runs the app's.

    Served on its own (stdio, or its own `http_app()`), the server starts the app's lifespan so
    routes find what it sets up. Mounted inside that same app, it leaves the lifespan to the
    app, which is already running it: one start, never two.
    """
    if not hasattr(app, "openapi") or not hasattr(getattr(app, "router", None), "lifespan_context"):
        raise TypeError(f"from_fastapi() `app` must be a FastAPI application, got {app!r}")
    app_lifespan = _tracked_lifespan(app)
    user_lifespan = options.pop("lifespan", None)

    @contextlib.asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            state: dict[str, Any] = {}
            if id(app) not in _RUNNING_APPS.get(frozenset()):
                state.update(await stack.enter_async_context(app_lifespan(app)) or {})
            if user_lifespan is not None:
                entered = await stack.enter_async_context(user_lifespan(server))
                state.update(entered if isinstance(entered, dict) else {} if entered is None else {"lifespan": entered})
            yield state

    server = cls(name if name is not None else (getattr(app, "title", None) or "FastAPI"), lifespan=lifespan, **options)
    add_routes(server, app, **route_options)
    return server
