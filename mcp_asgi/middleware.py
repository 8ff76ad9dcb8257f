"""MCP middleware: your code around every MCP request, or around one kind of request.

Not ASGI middleware (that is `http_app(middleware=[Middleware(...)])`, and sees bytes):
an MCP middleware sees the decoded request (`MCPRequest`: method, tool name, arguments,
principal, ...) on every transport, because it wraps the protocol core's dispatch.

A middleware is any object with one or more of these async methods, each
`(self, request: MCPRequest, call_next) -> dict`:

    on_request                  every MCP request the server knows (initialize, ping, ... too)
    on_call_tool                tools/call
    on_read_resource            resources/read
    on_get_prompt               prompts/get
    on_list_tools               tools/list
    on_list_resources           resources/list
    on_list_resource_templates  resources/templates/list
    on_list_prompts             prompts/list

Each middleware is one layer: the first added is the outermost, and within one
middleware `on_request` wraps its specific hook. `await call_next(request)` runs the
layers inside and returns the MCP result as a dict (what the client gets under
`"result"`, before the 2026-07-28 fields `resultType`/`ttlMs`/`_meta.serverInfo` are
added); return it, or another dict in its place. Every layer sees what a client would:
a failing tool is a result with `"isError": True`, any other failure an `MCPError`.

Raising `MCPError` answers with that JSON-RPC error. Raising `ToolError` answers a
tools/call with an error result carrying its text (as from a tool), and any other
request with -32603 and its text. Any other exception is logged with its traceback
and answered like one from a tool: an error result for tools/call, -32603 otherwise
(with its text unless `mask_error_details=True`). Client notifications are not
requests and pass no middleware.

With no middleware the core dispatches exactly as before: the chains are built when a
middleware is added, never per request.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from mcp_asgi.components.errors import PASS_THROUGH, failure_text
from mcp_asgi.components.tools import ToolError, error_result
from mcp_asgi.principal import principal_of
from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR, MCPError

if TYPE_CHECKING:
    from starlette.requests import Request

    from mcp_asgi.context import Context
    from mcp_asgi.protocol.dispatch import Call, ProtocolCore

logger = logging.getLogger("mcp_asgi")

# The hook each method has besides `on_request`.
METHOD_HOOKS = {
    "tools/call": "on_call_tool",
    "resources/read": "on_read_resource",
    "prompts/get": "on_get_prompt",
    "tools/list": "on_list_tools",
    "resources/list": "on_list_resources",
    "resources/templates/list": "on_list_resource_templates",
    "prompts/list": "on_list_prompts",
}
HOOKS = ("on_request", *METHOD_HOOKS.values())
# Names other middleware libraries use that this one does not call: a typo, or code written for
# them; either way it would silently never run.
_NOT_HOOKS = ("on_message", "on_notification", "on_initialize", "on_tool_call")

# The methods whose params carry `arguments` the handler validates; the ones whose `uri` is their target.
_WITH_ARGUMENTS = frozenset({"tools/call", "prompts/get"})
_BY_URI = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})

Handler = Callable[["Call"], Awaitable[dict[str, Any]]]
CallNext = Callable[["MCPRequest"], Awaitable[dict[str, Any]]]


class MCPRequest:
    """One MCP request as a middleware sees it; pass it on with `await call_next(request)`.

    `arguments` may be replaced (`request.arguments = {...}`): the tool or prompt gets the
    new ones, validated against its schema as the client's would be. `state` is a dict
    for passing values between your hooks of the same request.
    """

    __slots__ = ("_call", "_core", "_context", "_state")

    def __init__(self, call: Call, core: ProtocolCore) -> None:
        self._call = call
        self._core = core
        self._context: Context | None = None
        self._state: dict[str, Any] | None = None

    def __repr__(self) -> str:
        target = f" {self.name!r}" if self.name is not None else ""
        return f"<MCPRequest {self.method}{target} id={self.request_id!r}>"

    @property
    def method(self) -> str:
        """The JSON-RPC method: `"tools/call"`, `"resources/read"`, ..."""
        return self._call.method

    @property
    def name(self) -> str | None:
        """The tool or prompt name (tools/call, prompts/get) or the resource URI (resources/*); else None."""
        key = "name" if self._call.method in _WITH_ARGUMENTS else "uri" if self._call.method in _BY_URI else None
        value = self._call.params.get(key) if key is not None else None
        return value if isinstance(value, str) else None

    @property
    def arguments(self) -> dict[str, Any] | None:
        """The arguments of a tools/call or prompts/get (None when absent, and for other methods)."""
        if self._call.method not in _WITH_ARGUMENTS:
            return None
        return self._call.params.get("arguments")

    @arguments.setter
    def arguments(self, value: dict[str, Any] | None) -> None:
        if self._call.method not in _WITH_ARGUMENTS:
            raise TypeError(f"{self._call.method} has no arguments to replace; only tools/call and prompts/get do")
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"arguments must be a dict or None, not {type(value).__name__}")
        # A new params dict and call: the client's message stays as it came (requestState binds to it).
        self._call = self._call._replace(params={**self._call.params, "arguments": value})

    @property
    def params(self) -> dict[str, Any]:
        """The request's params as the handler will see them (read only: replace `arguments` instead)."""
        return self._call.params

    @property
    def meta(self) -> dict[str, Any]:
        """`params._meta` (progress token, trace context, 2026-07-28 client fields)."""
        return self._call.meta

    @property
    def request_id(self) -> Any:
        return self._call.request_id

    @property
    def protocol_version(self) -> str:
        return self._call.revision.version

    @property
    def session_id(self) -> str | None:
        """The 2025 session's id (`"stdio"` over stdio); None on 2026-07-28 and stateless endpoints."""
        session = self._call.session
        return session.session_id if session is not None else None

    @property
    def request(self) -> Request | None:
        """The Starlette `Request` that carried this MCP request (None over stdio)."""
        return self._call.request

    @property
    def principal(self) -> str | None:
        """Who is asking, as sessions are bound to it (`"user:<identity>"`, a credential digest, or None)."""
        request = self._call.request
        return principal_of(request.scope) if request is not None else None

    @property
    def context(self) -> Context:
        """The server's `Context` for this request, as a tool would get it (built on first use)."""
        if self._context is None:
            self._context = self._core.context(self._call)
        return self._context

    @property
    def server(self) -> Any:
        """The `MCPServer` answering."""
        return self._core.server

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            self._state = {}
        return self._state


def check_middleware(middleware: Any) -> tuple[str, ...]:
    """The hooks `middleware` has; a TypeError that says what is wrong when it is not one."""
    from starlette.middleware import Middleware

    if isinstance(middleware, Middleware):
        raise TypeError(
            "starlette.middleware.Middleware(...) is ASGI middleware: pass it to `http_app(middleware=[...])`. "
            "MCPServer(middleware=...) and add_middleware() take MCP middleware (objects with on_call_tool, ...)"
        )
    if isinstance(middleware, type):
        raise TypeError(f"pass an instance of {middleware.__name__}, not the class: {middleware.__name__}()")
    strays = [name for name in _NOT_HOOKS if callable(getattr(middleware, name, None))]
    if strays:
        raise TypeError(
            f"{type(middleware).__name__} defines {', '.join(strays)}, which MCP middleware never calls; "
            f"the hooks are {', '.join(HOOKS)}"
        )
    found = tuple(name for name in HOOKS if getattr(middleware, name, None) is not None)
    if not found:
        raise TypeError(
            f"{type(middleware).__name__} is not MCP middleware: it has none of the async methods {', '.join(HOOKS)}"
        )
    for name in found:
        if not inspect.iscoroutinefunction(getattr(middleware, name)):
            raise TypeError(f"{type(middleware).__name__}.{name} must be an async method: async def {name}(...)")
    return found


def not_asgi_middleware(entries: Iterable[Any]) -> TypeError:
    """The error for `http_app(middleware=...)` entries that are not `Middleware(...)`, naming where MCP ones go."""
    if any(getattr(entry, name, None) is not None for entry in entries for name in HOOKS):
        return TypeError(
            "http_app(middleware=...) takes ASGI middleware (starlette.middleware.Middleware(...)); "
            "MCP middleware (on_call_tool, ...) goes to MCPServer(middleware=[...]) or mcp.add_middleware()"
        )
    return TypeError("`middleware` must be a list of starlette.middleware.Middleware(...) entries")


def telemetry_layer(enabled: bool | None) -> list[Any]:
    """`[Telemetry()]`, or `[]` when off (False) or when opentelemetry-api is absent and not insisted on (None)."""
    if enabled is False:
        return []
    try:
        from mcp_asgi.telemetry import Telemetry
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "opentelemetry":
            raise
        if enabled:
            raise ModuleNotFoundError(
                "MCPServer(telemetry=True) needs opentelemetry-api: pip install 'mcp-asgi[otel]'", name=exc.name
            ) from None
        return []
    return [Telemetry()]


def build_handlers(
    core: ProtocolCore, handlers: dict[str, Handler], middleware: Iterable[Any], *, mask: Callable[[], bool]
) -> dict[str, Handler]:
    """`handlers` with each method that some middleware hooks wrapped in its chain; the rest as they are.

    `mask()` says whether an exception's text may reach the client (the server's `mask_error_details`).
    """
    middleware = list(middleware)
    wrapped = dict(handlers)
    for method, handler in handlers.items():
        hooks = []
        for layer in middleware:
            # Within one middleware on_request is outside its specific hook; layers nest in order.
            for name in ("on_request", METHOD_HOOKS.get(method)):
                hook = getattr(layer, name, None) if name is not None else None
                if hook is not None:
                    hooks.append(hook)
        if hooks:
            wrapped[method] = _chain(core, method, handler, hooks, mask)
    return wrapped


def _chain(
    core: ProtocolCore, method: str, handler: Handler, hooks: list[Callable[..., Any]], mask: Callable[[], bool]
) -> Handler:
    call_next: CallNext = _innermost(method, handler)
    for hook in reversed(hooks):
        call_next = _layer(method, hook, call_next, mask)
    outermost = call_next

    async def dispatch(call: Call) -> dict[str, Any]:
        return await outermost(MCPRequest(call, core))

    return dispatch


def _innermost(method: str, handler: Handler) -> CallNext:
    async def run_handler(request: MCPRequest) -> dict[str, Any]:
        if not isinstance(request, MCPRequest):
            raise TypeError(f"call_next() takes the MCPRequest your hook was given, not {type(request).__name__}")
        try:
            return await handler(request._call)
        except PASS_THROUGH:
            raise
        except Exception as exc:
            # What the core does without middleware: the handler's own bug is -32603, its text only logged.
            logger.exception("Handler for %s raised", method)
            raise MCPError(INTERNAL_ERROR, "Internal error") from exc

    return run_handler


def _layer(method: str, hook: Callable[..., Any], inner: CallNext, mask: Callable[[], bool]) -> CallNext:
    where = getattr(hook, "__qualname__", repr(hook))

    async def run_hook(request: MCPRequest) -> dict[str, Any]:
        try:
            result = await hook(request, inner)
        except PASS_THROUGH:
            raise
        except ToolError as exc:
            if method == "tools/call":
                return error_result(str(exc))
            raise MCPError(INTERNAL_ERROR, str(exc)) from exc
        except Exception as exc:
            logger.exception("MCP middleware %s raised", where)
            return _failed(method, request, exc, mask())
        if not isinstance(result, dict):
            problem = TypeError(f"{where} returned {type(result).__name__}; return the dict call_next() gave, or one")
            logger.error("MCP middleware %s", problem)
            return _failed(method, request, problem, mask())
        return result

    return run_hook


def _failed(method: str, request: MCPRequest, exc: Exception, mask: bool) -> dict[str, Any]:
    """What the client gets when a middleware fails: as from a tool's or a handler's own failure."""
    if method == "tools/call":
        return error_result(failure_text(f"Error calling tool '{request.name}'", exc, mask=mask))
    raise MCPError(INTERNAL_ERROR, failure_text(f"Error handling {method}", exc, mask=mask)) from exc
