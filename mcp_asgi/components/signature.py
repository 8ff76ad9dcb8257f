"""Reading a user function's signature: argument schema, validation, Context injection.

One pydantic model is built per function when it is registered; each call only
runs the model's compiled validator.
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

import pydantic

from mcp_asgi.concurrency import run_sync
from mcp_asgi.dependencies import Injector, request_source


# Made on the first registration, not at import: defining a pydantic model builds its schema and
# validator and loads pydantic's plugins (a scan of installed packages), most of `import mcp_asgi`.
@functools.cache
def _base_model_names() -> frozenset[str]:
    return frozenset(dir(pydantic.BaseModel))


@functools.cache
def _arguments_base() -> type[pydantic.BaseModel]:
    class _ArgumentsBase(pydantic.BaseModel):
        # Extra arguments are ignored rather than refused: clients sometimes send
        # fields a newer schema had, and the function could not use them anyway.
        model_config = pydantic.ConfigDict(extra="ignore", arbitrary_types_allowed=True, populate_by_name=True)

    return _ArgumentsBase


def _type_hints(fn: Callable[..., Any], localns: dict[str, Any] | None) -> dict[str, Any]:
    target = fn
    if not (inspect.isfunction(target) or inspect.ismethod(target)) and callable(target):
        target = target.__call__  # type: ignore[operator]
    try:
        return typing.get_type_hints(target, localns=localns, include_extras=True)
    except Exception:
        return getattr(target, "__annotations__", {}) or {}


def _is_context(annotation: Any) -> bool:
    from mcp_asgi.context import Context

    if annotation is None:
        return False
    origin = typing.get_origin(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "types.UnionType"):
        return any(_is_context(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _is_context(typing.get_args(annotation)[0])
    return inspect.isclass(annotation) and issubclass(annotation, Context)


def _allows_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _allows_none(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return type(None) in typing.get_args(annotation)
    return False


def is_async_callable(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    # An object whose __call__ is async (a callable class instance).
    return not inspect.isfunction(fn) and inspect.iscoroutinefunction(type(fn).__call__)


class FunctionArguments:
    """The arguments of a user function: their JSON schema and a validator for calls."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        model_name: str,
        skip: tuple[str, ...] = (),
        localns: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.is_async = is_async_callable(fn)
        # A sync function called on the event loop, not in a thread (`@mcp.tool(run_in_thread=False)`).
        self.run_inline = False
        # `localns`: the namespace the function was defined in, so string annotations
        # (`from __future__ import annotations`) naming local classes still resolve.
        hints = _type_hints(fn, localns)
        self.return_annotation = hints.get("return", inspect.Signature.empty)
        self.context_param: str | None = None
        self.accepts_any = False
        fields: dict[str, Any] = {}
        # (field name in the model, parameter name of the function)
        self._names: list[tuple[str, str]] = []
        # Parameters the HTTP request fills, never the client: the Request, FastAPI dependencies.
        request_params: list[tuple[str, bool]] = []
        fastapi_params: list[inspect.Parameter] = []
        owner = f"{getattr(fn, '__qualname__', None) or callable_name(fn)}()"
        for index, param in enumerate(inspect.signature(fn).parameters.values()):
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                self.accepts_any = True
                continue
            if param.kind is inspect.Parameter.VAR_POSITIONAL or param.name in skip:
                continue
            annotation = hints.get(param.name, Any)
            if _is_context(annotation):
                self.context_param = param.name
                continue
            source = request_source(param, annotation, owner)
            if source == "request":
                request_params.append((param.name, _allows_none(annotation)))
                continue
            if source == "fastapi":
                fastapi_params.append(param.replace(annotation=annotation))
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            field_name = param.name
            if field_name.startswith("_") or field_name in _base_model_names():
                # A parameter called `json` or `schema` would shadow BaseModel; keep it under an alias.
                field_name = f"arg_{index}"
                fields[field_name] = (annotation, pydantic.Field(default, alias=param.name))
            else:
                fields[field_name] = (annotation, default)
            self._names.append((field_name, param.name))
        self.parameter_names = [name for _, name in self._names]
        self.injector = Injector(request_params, fastapi_params, owner) if request_params or fastapi_params else None
        # Whether a call needs the `Context` built: for the function, or for the request its injector reads.
        self.needs_context = self.context_param is not None or self.injector is not None
        self.model = pydantic.create_model(model_name, __base__=_arguments_base(), **fields)
        self._validate = self.model.__pydantic_validator__.validate_python

    def json_schema(self) -> dict[str, Any]:
        schema = self.model.model_json_schema(by_alias=True)
        schema.pop("title", None)
        schema.setdefault("properties", {})
        return schema

    def describe(self) -> list[dict[str, Any]]:
        """Name, description and required flag of each argument (the shape prompts use)."""
        described = []
        for field_name, name in self._names:
            info = self.model.model_fields[field_name]
            entry: dict[str, Any] = {"name": name, "required": info.is_required()}
            if info.description:
                entry["description"] = info.description
            described.append(entry)
        return described

    def validate(self, arguments: dict[str, Any] | None) -> dict[str, Any]:
        """Keyword arguments for the function; raises `pydantic.ValidationError` on bad input."""
        validated = self._validate(arguments or {})
        values = validated.__dict__
        kwargs = {name: values[field_name] for field_name, name in self._names}
        if self.accepts_any and arguments:
            for key, value in arguments.items():
                kwargs.setdefault(key, value)
        return kwargs

    async def call(self, kwargs: dict[str, Any], context: Any = None, *, injected: bool = False) -> Any:
        if self.context_param is not None:
            kwargs[self.context_param] = context
        if self.injector is not None and not injected:
            # The request and FastAPI dependencies fill their parameters, then call back here (`yield` cleanup
            # after): a function without them pays this one check.
            invoke = functools.partial(self.call, context=context, injected=True)
            return await self.injector.call(invoke, kwargs, context)
        if self.is_async:
            return await self.fn(**kwargs)
        if self.run_inline:
            return self.fn(**kwargs)
        # Sync functions may block: keep them off the event loop (in the host's runner, if it set one).
        return await run_sync(functools.partial(self.fn, **kwargs))


def describe_validation_error(error: pydantic.ValidationError) -> str:
    """One line per problem, naming the field, so a model can correct its call."""
    problems = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item.get("loc", ())) or "arguments"
        message = item.get("msg", "invalid value")
        if item.get("type") == "missing":
            problems.append(f"{location}: missing required argument")
            continue
        given = item.get("input")
        if isinstance(given, (str, int, float, bool)) or given is None:
            problems.append(f"{location}: {message} (got {given!r})")
        else:
            problems.append(f"{location}: {message}")
    return "; ".join(problems)


def caller_namespace(depth: int = 2) -> dict[str, Any] | None:
    """Locals of the scope that called a decorator (`depth` frames up), for annotation lookup."""
    try:
        frame = sys._getframe(depth)
    except ValueError:
        return None
    return dict(frame.f_locals) if frame.f_code.co_name != "<module>" else None


def docstring_description(fn: Callable[..., Any]) -> str | None:
    doc = inspect.getdoc(fn)
    return doc.strip() if doc else None


def callable_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if name == "<lambda>":
        raise ValueError("A lambda needs an explicit name=... when registered")
    return name
