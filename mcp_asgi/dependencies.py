"""FastAPI dependencies and the HTTP request in tools, resources and prompts; `http_app(dependencies=...)`.

    @mcp.tool
    async def my_notes(user: Annotated[User, Depends(current_user)], db=Depends(get_db)) -> list[str]: ...

A parameter whose default or `Annotated` metadata is FastAPI's `Depends`/`Security`
(or `Header`/`Cookie`/`Query`) is filled per call by FastAPI's own solver
(`fastapi.dependencies.utils.solve_dependencies`) against the call's HTTP request: sub-dependencies,
`yield` dependencies (closed after the call, also when it fails or is cancelled), the per-call
cache, `Security` scopes, and the host app's `dependency_overrides`. A parameter annotated
`Request` (or `HTTPConnection`) gets the request. Neither kind is part of the input schema, and an
argument of that name from the client is ignored like any unknown argument.

FastAPI stays optional: it is imported only when a signature carries one of its markers (which
means the user's code imported it already). Functions without such parameters are untouched and
pay nothing per call. An `HTTPException` (FastAPI's or Starlette's) from a dependency or the
function itself becomes a tool error result with the status in `_meta["io.mcp-asgi/httpStatus"]`,
or a JSON-RPC error for resources and prompts (see `request_error`).
"""

from __future__ import annotations

import inspect
import logging
import types
import typing
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from http import HTTPStatus
from typing import Any

from starlette.background import BackgroundTasks
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import Message, Scope, Send
from starlette.websockets import WebSocket

from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, MCPError, encode, error_response

__all__ = [
    "HTTP_STATUS_META",
    "REQUEST_ERRORS",
    "DependencyGate",
    "InjectionError",
    "Injector",
    "request_error",
    "request_error_result",
    "request_source",
]

logger = logging.getLogger("mcp_asgi")

# Where a tool error result that came from an HTTPException carries its status.
HTTP_STATUS_META = "io.mcp-asgi/httpStatus"
# The JSON-RPC error code a refusal with `status` gets (401 and 403 as the auth layer answers them).
SERVER_ERROR = -32000

# Parameter kinds of FastAPI routes that no MCP call can fill: (class, FastAPI's Dependant attribute, why).
_REFUSED_TYPES: tuple[tuple[type, str, str], ...] = (
    (WebSocket, "websocket_param_name", "an MCP call does not come over a WebSocket"),
    (Response, "response_param_name", "a tool's result is its return value; there is no HTTP response to change"),
    (
        BackgroundTasks,
        "background_tasks_param_name",
        "there is no HTTP response to run them after; start the work with anyio or a task queue",
    ),
)


class InjectionError(Exception):
    """A request-fed parameter could not be filled: no request (stdio), or the request does not fit."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


# What `Tool.run` and `call_user_code` turn into an error result / a JSON-RPC error.
REQUEST_ERRORS = (HTTPException, InjectionError)


def error_code(status: int) -> int:
    """The JSON-RPC code of a refusal with this HTTP status: -32001/-32003 as auth, -32600 for 4xx, else -32000."""
    from mcp_asgi.auth.challenge import FORBIDDEN, UNAUTHORIZED  # errors only: `import mcp_asgi` skips auth

    if status == 401:
        return UNAUTHORIZED
    if status == 403:
        return FORBIDDEN
    return INVALID_REQUEST if 400 <= status < 500 else SERVER_ERROR


def _message_and_status(exc: Exception) -> tuple[str, int | None, Any]:
    if isinstance(exc, InjectionError):
        return str(exc), exc.status, None
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if isinstance(detail, str) and detail:
        return detail, exc.status_code, None
    # A structured detail (FastAPI allows any JSON value): the status phrase, and the detail as data.
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = f"HTTP {exc.status_code}"
    return phrase, exc.status_code, detail


def request_error_result(exc: Exception) -> dict[str, Any]:
    """The tool result for an `HTTPException` or `InjectionError`: its detail as text, its status in `_meta`."""
    message, status, detail = _message_and_status(exc)
    text = message if detail is None else f"{message}: {encode(detail).decode()}"
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": True}
    if status is not None:
        result["_meta"] = {HTTP_STATUS_META: status}
    return result


def request_error(exc: Exception) -> MCPError:
    """The JSON-RPC error for an `HTTPException` or `InjectionError` in a resource or prompt."""
    message, status, detail = _message_and_status(exc)
    if status is None:
        return MCPError(INVALID_REQUEST, message)
    data: dict[str, Any] = {"httpStatus": status}
    if detail is not None:
        data["detail"] = detail
    return MCPError(error_code(status), message, data)


# Reading signatures (once, when a function is registered).
def _unwrap(annotation: Any) -> Any:
    """The class an annotation names, through `Annotated[X, ...]` and `X | None`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _fastapi_marker(param: inspect.Parameter, annotation: Any) -> Any:
    """FastAPI's `Depends`/`Header`/... on this parameter, if any; imports nothing unless one is there."""
    candidates = [param.default] if param.default is not inspect.Parameter.empty else []
    if typing.get_origin(annotation) is typing.Annotated:
        candidates.extend(annotation.__metadata__)
    for item in candidates:
        if type(item).__module__.startswith("fastapi."):
            from fastapi import params

            if isinstance(item, (params.Depends, params.Param, params.Body)):
                return item
    return None


def request_source(param: inspect.Parameter, annotation: Any, owner: str) -> str | None:
    """Where a parameter's value comes from if not from the client: "request", "fastapi", or None.

    Raises TypeError, naming the parameter and `owner`, for what cannot work in an MCP call.
    """
    marker = _fastapi_marker(param, annotation)
    if marker is not None:
        from fastapi import params

        if isinstance(marker, (params.Body, params.Path)):
            raise TypeError(
                f"Parameter '{param.name}' of {owner} is FastAPI's {type(marker).__name__}(): an MCP call's body is "
                f"its JSON-RPC message and its path is the MCP endpoint's; make it a plain parameter (the client "
                f"sends it as an argument)"
            )
        return "fastapi"
    cls = _unwrap(annotation)
    # `dict[str, Any]` counts as a class for inspect.isclass on Python 3.10, and issubclass refuses it.
    if not inspect.isclass(cls) or isinstance(cls, types.GenericAlias):
        return None
    for refused, _, why in _REFUSED_TYPES:
        if issubclass(cls, refused):
            raise TypeError(
                f"Parameter '{param.name}' of {owner} asks for a {cls.__name__}, which a tool cannot have: {why}"
            )
    if issubclass(cls, HTTPConnection):
        return "request"
    if cls.__name__ == "SecurityScopes" and cls.__module__.startswith("fastapi."):
        raise TypeError(
            f"Parameter '{param.name}' of {owner} asks for SecurityScopes, which only a dependency can take "
            f"(declare the scopes with Security(dependency, scopes=[...]) on the parameter instead)"
        )
    return None


def _call_name(call: Any) -> str:
    return getattr(call, "__name__", None) or type(call).__name__


def _walk(dependant: Any) -> Iterator[Any]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _request_use(dependant: Any) -> str | None:
    """What in a dependency tree reads the HTTP request, said for an error message; None if nothing does."""
    for node in _walk(dependant):
        name = _call_name(node.call)
        for kind, fields in (("header", node.header_params), ("cookie", node.cookie_params)):
            if fields:
                return f"{name} reads the {kind} '{fields[0].alias}'"
        if node.query_params:
            return f"{name} reads the query parameter '{node.query_params[0].alias}'"
        if node.request_param_name or node.http_connection_param_name:
            return f"{name} takes the Request"
    return None


def _check_tree(dependant: Any, owner: str) -> None:
    """Refuse, when registering, the dependency parameters no MCP call can fill."""
    for node in _walk(dependant):
        name = _call_name(node.call)
        if node.body_params:
            raise TypeError(
                f"Dependency {name} of {owner} reads the request body ('{node.body_params[0].name}'); an MCP "
                f"request's body is its JSON-RPC message, so no dependency of a tool can take Body/Form/File"
            )
        for kind, attribute, why in _REFUSED_TYPES:
            param = getattr(node, attribute, None)
            if param:
                raise TypeError(
                    f"Dependency {name} of {owner} asks for a {kind.__name__} in '{param}', which a tool cannot "
                    f"have: {why}"
                )


def _routed_request(request: Request, host_app: Any) -> Request:
    """A copy of `request` as a route of the host app sees it: `request.app` is the host app.

    A copy, so the exit stacks FastAPI keeps in the scope are this call's alone (a JSON-RPC
    batch shares one HTTP request); `state`, `user` and the body stay shared.
    """
    scope = dict(request.scope)
    if host_app is not None:
        scope["app"] = host_app
    routed = Request(scope, request.receive)
    body = getattr(request, "_body", None)
    if body is not None:
        routed._body = body  # read already by the transport: `await request.body()` must not wait for more
    return routed


def _empty_request(host_app: Any) -> Request:
    """The request FastAPI's solver is handed over stdio, for dependencies that read nothing of it."""
    scope: Scope = {"type": "http", "method": "POST", "path": "/", "root_path": "", "query_string": b""}
    scope.update(headers=[], state={})
    if host_app is not None:
        scope["app"] = host_app
    return Request(scope)


class _Solver:
    """FastAPI's `Dependant` for some parameters, built once, and solved per call."""

    def __init__(self, parameters: list[inspect.Parameter], owner: str) -> None:
        from fastapi.dependencies.utils import get_dependant

        def holder() -> None:  # pragma: no cover - only its signature is read
            """The dependency parameters alone, so FastAPI never sees the client's arguments."""

        holder.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [param.replace(kind=inspect.Parameter.KEYWORD_ONLY) for param in parameters]
        )
        self.dependant = get_dependant(path="", call=holder)
        _check_tree(self.dependant, owner)
        self.names = [param.name for param in parameters]
        # Per parameter, what of the request it needs (None: nothing, it resolves over stdio too).
        self.request_uses: dict[str, str] = {}
        for sub in self.dependant.dependencies:
            use = _request_use(sub)
            if use is not None and sub.name is not None:
                self.request_uses.setdefault(sub.name, use)
        for kind, fields in (
            ("header", self.dependant.header_params),
            ("cookie", self.dependant.cookie_params),
            ("query parameter", self.dependant.query_params),
        ):
            for field in fields:
                self.request_uses.setdefault(field.name, f"it reads the {kind} '{field.alias}'")

    async def solve(self, request: Request, app: Any, request_stack: AsyncExitStack, function_stack: Any) -> dict:
        from fastapi.dependencies.utils import solve_dependencies

        # FastAPI >= 0.118 finds its exit stacks in the scope; older versions take `async_exit_stack`.
        request.scope["fastapi_inner_astack"] = request_stack
        request.scope["fastapi_function_astack"] = function_stack
        overrides = app if getattr(app, "dependency_overrides", None) else None
        solved = await solve_dependencies(
            request=request,
            dependant=self.dependant,
            dependency_overrides_provider=overrides,
            async_exit_stack=request_stack,
            embed_body_fields=False,
        )
        if solved.errors:
            raise InjectionError(_describe_errors(solved.errors), status=422)
        return solved.values


def _describe_errors(errors: Sequence[Any]) -> str:
    """FastAPI's validation errors (a missing header, a bad cookie) in one line, as a 422 would list them."""
    problems = []
    for error in errors:
        if not isinstance(error, dict):
            problems.append(str(error))
            continue
        where = " ".join(str(part) for part in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return "The HTTP request does not satisfy the dependencies: " + "; ".join(problems)


class Injector:
    """Fills the request-fed parameters of one function per call: the Request, and FastAPI dependencies."""

    def __init__(self, request_params: list[tuple[str, bool]], fastapi_params: list[inspect.Parameter], owner: str):
        # (name, None allowed) of each parameter that gets the request itself.
        self.request_params = request_params
        self.solver = _Solver(fastapi_params, owner) if fastapi_params else None

    async def call(
        self, invoke: Callable[[dict[str, Any]], Awaitable[Any]], kwargs: dict[str, Any], context: Any
    ) -> Any:
        """`invoke(kwargs)` with the request-fed parameters filled; `yield` dependencies close after it."""
        raw = context.request if context is not None else None
        app = context.app if context is not None else None
        request = _routed_request(raw, app) if raw is not None else None
        for name, optional in self.request_params:
            if request is None and not optional:
                raise InjectionError(
                    f"Parameter '{name}' needs the HTTP request, and this call has none (it came over stdio)"
                )
            kwargs[name] = request
        solver = self.solver
        if solver is None:
            return await invoke(kwargs)
        if request is None:
            for name in solver.names:
                use = solver.request_uses.get(name)
                if use is not None:
                    raise InjectionError(
                        f"Parameter '{name}' needs the HTTP request ({use}), and this call has none "
                        f"(it came over stdio)"
                    )
            request = _empty_request(app)
        # FastAPI closes dependencies of scope "function" before those of scope "request"; here both
        # close once the function returned or failed, in that order.
        async with AsyncExitStack() as request_stack, AsyncExitStack() as function_stack:
            values = await solver.solve(request, app, request_stack, function_stack)
            for name in solver.names:
                kwargs[name] = values[name]
            return await invoke(kwargs)
        raise RuntimeError("A `yield` dependency caught the call's exception and did not raise it again")


class DependencyGate:
    """`http_app(dependencies=[...])`: FastAPI dependencies run once per HTTP request to the MCP endpoint.

    As a router's `dependencies=`: their values are discarded, an `HTTPException` answers the
    request (status, detail, headers). They run after the Host/Origin guard and the `auth=` gate
    (`auth`, when given) and before the body is read, so a refused request runs nothing;
    CORS preflights (`OPTIONS`) skip them. `yield` dependencies close as soon as all are
    solved, before the request is dispatched (a tool needing one declares it itself).
    """

    def __init__(self, dependencies: Sequence[Any], auth: Any = None) -> None:
        if not isinstance(dependencies, (list, tuple)):
            raise TypeError(f"`dependencies` must be a list of FastAPI Depends(...), got {dependencies!r}")
        self.auth = auth
        parameters = []
        for index, dependency in enumerate(dependencies):
            if type(dependency).__name__ not in ("Depends", "Security") or not type(dependency).__module__.startswith(
                "fastapi."
            ):
                raise TypeError(
                    f"`dependencies` entries must be FastAPI Depends(...)/Security(...), got {dependency!r} "
                    f"at index {index}"
                )
            parameters.append(
                inspect.Parameter(f"dependency_{index}", inspect.Parameter.KEYWORD_ONLY, default=dependency)
            )
        self.solver = _Solver(parameters, "http_app(dependencies=...)")

    async def admit(self, scope: Scope, send: Send) -> bool:
        """True to go on with the request; False when a refusal was sent."""
        if self.auth is not None and not await self.auth.admit(scope, send):
            return False
        if scope["method"] == "OPTIONS":
            return True
        app = scope.get("mcp_asgi.host_app")
        request = _routed_request(Request(scope, _body_not_available), app)
        try:
            async with AsyncExitStack() as request_stack, AsyncExitStack() as function_stack:
                await self.solver.solve(request, app, request_stack, function_stack)
        except REQUEST_ERRORS as exc:
            message, status, detail = _message_and_status(exc)
            status = status or 400
            headers = getattr(exc, "headers", None) or {}
            await _send_refusal(send, status, MCPError(error_code(status), message, detail), headers)
            return False
        except Exception:
            logger.exception("A dependency of the MCP endpoint (http_app(dependencies=...)) raised")
            error = MCPError(INTERNAL_ERROR, "Internal error: a dependency of the MCP endpoint failed")
            await _send_refusal(send, 500, error, {})
            return False
        return True


async def _body_not_available() -> Message:
    raise RuntimeError(
        "http_app(dependencies=...) run before the MCP request's body is read, and cannot read it; "
        "a dependency that needs the JSON-RPC message belongs in a tool's signature"
    )


async def _send_refusal(send: Send, status: int, error: MCPError, headers: dict[str, str]) -> None:
    body = encode(error_response(None, error))
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    for name, value in headers.items():
        if name.lower() not in ("content-type", "content-length"):
            raw.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
