"""Tools: a Python function becomes a tool definition and a callable with validated arguments."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import typing
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import anyio.to_thread
import pydantic

from mcp_asgi.components.content import Audio, File, Image, reads_files, to_content, to_json_text, to_jsonable
from mcp_asgi.components.errors import PASS_THROUGH, failure_text
from mcp_asgi.components.signature import (
    FunctionArguments,
    callable_name,
    describe_validation_error,
    docstring_description,
)
from mcp_asgi.dependencies import REQUEST_ERRORS, request_error_result
from mcp_asgi.protocol.param_headers import param_headers
from mcp_asgi.protocol.scopes import validate_scopes

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("mcp_asgi")

# Set by the tasks runtime on an attempt that may be retried: an unexpected exception then
# propagates (the job engine retries) instead of becoming an error result (mcp_asgi/tasks/).
raise_unexpected: ContextVar[bool] = ContextVar("mcp_asgi_raise_unexpected", default=False)


class ToolError(Exception):
    """Raise from a tool to return an error result whose text is exactly this message."""


@dataclasses.dataclass
class ToolResult:
    """Full control over a tool's result: content blocks, structured content, error flag, `_meta`."""

    content: Any = None
    structured_content: Any = None
    is_error: bool = False
    meta: dict[str, Any] | None = None


_NO_SCHEMA_TYPES = (str, Image, Audio, File, bytes, ToolResult)


def _wants_wrapped(annotation: Any) -> bool | None:
    """None: no structured output; False: the value is the object; True: wrap it as {"result": value}."""
    if annotation in (inspect.Signature.empty, None, type(None), Any):
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _wants_wrapped(typing.get_args(annotation)[0])
    if inspect.isclass(annotation):
        if issubclass(annotation, _NO_SCHEMA_TYPES):
            return None
        if issubclass(annotation, pydantic.BaseModel) or dataclasses.is_dataclass(annotation):
            return False
        if typing.is_typeddict(annotation) or issubclass(annotation, dict):
            return False
    if origin is dict:
        return False
    if origin in (list, tuple) and any(
        inspect.isclass(arg) and issubclass(arg, (Image, Audio, File)) for arg in typing.get_args(annotation)
    ):
        return None
    return True


# How a tool is described, beyond its function: `Tool(fn, **options)` and `@mcp.tool(**options)`.
# Written as a call rather than a class: this module's annotations are strings, and a TypedDict
# class compiles each one into a ForwardRef, 3% of our share of `import mcp_asgi`.
ToolOptions = TypedDict(  # noqa: UP013 - see above
    "ToolOptions",
    {
        "name": str | None,
        "title": str | None,
        "description": str | None,
        "annotations": Any,
        "icons": list[dict[str, Any]] | None,
        "meta": dict[str, Any] | None,
        "input_schema": dict[str, Any] | None,
        "output_schema": dict[str, Any] | None,
        # False: no outputSchema or structuredContent even when the return type has a schema.
        "structured_output": bool | None,
        # OAuth scopes an HTTP request must be granted to call it (else 403); see mcp_asgi/protocol/scopes.py.
        "scopes": list[str] | tuple[str, ...] | set[str] | None,
        # False: a plain `def` tool runs on the event loop itself, without the hop to a worker thread.
        # Only for functions that return at once (no I/O, no sleeping, no heavy work): they block every request.
        "run_in_thread": bool,
        # The tasks extension (docs/tasks.md): True, a client that declared it gets a task, others a
        # blocking result; "required", others get -32021.
        "task": bool | Literal["required"],
        # "call": the call becomes a task before the function runs; "manual": the function runs in the
        # request (it may ask for input) and becomes a task when it calls `ctx.run_as_task()`.
        "task_start": Literal["call", "manual"],
        # A task of this tool that raises is retried by a job-engine runner (`MCPServer(task_runner=...)`).
        "retryable": bool,
    },
    total=False,
)


class Tool:
    """A registered tool. `definition` is what `tools/list` serves."""

    # Set by the server that registers it (`MCPServer(mask_error_details=...)`).
    mask_error_details = False

    def __init__(
        self, fn: Callable[..., Any], *, localns: dict[str, Any] | None = None, **options: Unpack[ToolOptions]
    ) -> None:
        unknown = sorted(set(options) - set(ToolOptions.__annotations__))
        if unknown:
            raise TypeError(
                f"Unknown tool option(s): {', '.join(unknown)}; known: {', '.join(ToolOptions.__annotations__)}"
            )
        name = options.get("name")
        title = options.get("title")
        description = options.get("description")
        annotations = options.get("annotations")
        input_schema = options.get("input_schema")
        output_schema = options.get("output_schema")
        structured_output = options.get("structured_output")
        icons, meta = options.get("icons"), options.get("meta")
        self.fn = fn
        self.name = name or callable_name(fn)
        self.scopes = validate_scopes(options.get("scopes"), f"tool {self.name!r}")
        self.arguments = FunctionArguments(fn, model_name=f"{self.name}_arguments", localns=localns)
        run_in_thread = options.get("run_in_thread", True)
        if not isinstance(run_in_thread, bool):
            raise TypeError(f"tool {self.name!r}: `run_in_thread` must be True or False, got {run_in_thread!r}")
        if not run_in_thread:
            if self.arguments.is_async:
                raise ValueError(
                    f"tool {self.name!r}: run_in_thread=False is for plain `def` functions; an async one "
                    "already runs on the event loop"
                )
            self.arguments.run_inline = True
        self.task, self.task_start, self.retryable = _task_options(self.name, options)
        self.description = description if description is not None else docstring_description(fn)
        self.input_schema = input_schema if input_schema is not None else self.arguments.json_schema()
        # Arguments mirrored into Mcp-Param-* headers (SEP-2243); a bad annotation fails here, not per call.
        self.param_headers = param_headers(self.input_schema)
        self.wrap_result: bool | None = None
        self.output_schema = output_schema
        if output_schema is None and structured_output is not False:
            self.wrap_result = _wants_wrapped(self.arguments.return_annotation)
            if self.wrap_result is not None:
                schema = pydantic.TypeAdapter(self.arguments.return_annotation).json_schema(mode="serialization")
                schema.pop("title", None)
                if self.wrap_result or schema.get("type") != "object":
                    self.wrap_result = True
                    schema = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
                self.output_schema = schema
        elif output_schema is not None:
            self.wrap_result = False

        definition: dict[str, Any] = {"name": self.name}
        if title is not None:
            definition["title"] = title
        if self.description:
            definition["description"] = self.description
        definition["inputSchema"] = self.input_schema
        if annotations is not None:
            if isinstance(annotations, pydantic.BaseModel):
                annotations = annotations.model_dump(by_alias=True, exclude_none=True)
            definition["annotations"] = dict(annotations)
        if icons:
            definition["icons"] = icons
        if meta:
            definition["_meta"] = meta
        # Revisions before 2025-06-18 know neither output schemas nor titles.
        self.legacy_definition = {k: v for k, v in definition.items() if k not in ("title", "icons")}
        if self.output_schema is not None:
            definition["outputSchema"] = self.output_schema
        self.definition = definition

    async def run(self, arguments: Any, context: Any, *, structured: bool = True) -> dict[str, Any]:
        """Call the tool; every failure becomes a result with `isError: true`."""
        if arguments is not None and not isinstance(arguments, dict):
            return error_result(f"Invalid arguments for tool '{self.name}': arguments must be an object")
        try:
            kwargs = self.arguments.validate(arguments)
        except pydantic.ValidationError as exc:
            return error_result(f"Invalid arguments for tool '{self.name}': {describe_validation_error(exc)}")
        try:
            value = await self.arguments.call(kwargs, context)
        except PASS_THROUGH:
            # Protocol outcomes (missing capability, input required) are not tool failures.
            raise
        except REQUEST_ERRORS as exc:
            # An HTTPException (its status goes in `_meta`), or a parameter the request could not fill.
            return request_error_result(exc)
        except ToolError as exc:
            return error_result(str(exc))
        except Exception as exc:
            if raise_unexpected.get():
                raise
            logger.exception("Tool %r raised", self.name)
            return error_result(failure_text(f"Error calling tool '{self.name}'", exc, mask=self.mask_error_details))
        try:
            if reads_files(value):
                # Image/Audio/FileContent(path=...) read the file here: never on the event loop.
                return await anyio.to_thread.run_sync(functools.partial(self.to_result, value, structured=structured))
            return self.to_result(value, structured=structured)
        except Exception as exc:
            # The conversion error may quote the value, which is as private as an exception's text.
            logger.exception("Tool %r returned a value that could not be converted", self.name)
            what = f"Error calling tool '{self.name}': it returned an unusable value"
            return error_result(failure_text(what, exc, mask=self.mask_error_details))

    def to_result(self, value: Any, *, structured: bool = True) -> dict[str, Any]:
        if isinstance(value, ToolResult):
            result: dict[str, Any] = {"content": to_content(value.content)}
            if value.structured_content is not None and structured:
                result["structuredContent"] = to_jsonable(value.structured_content)
            if value.is_error:
                result["isError"] = True
            if value.meta:
                result["_meta"] = value.meta
            return result
        if self.wrap_result is not None:
            data = to_jsonable(value)
            if self.wrap_result:
                data = {"result": data}
            # Also as text, for clients that ignore structured content (the spec asks for this).
            result = {"content": [{"type": "text", "text": to_json_text(data if not self.wrap_result else value)}]}
            if structured:
                result["structuredContent"] = data
            return result
        result = {"content": to_content(value)}
        if structured and isinstance(value, dict) and not _looks_like_content(value):
            result["structuredContent"] = to_jsonable(value)
        return result


def _task_options(name: str, options: ToolOptions) -> tuple[bool | str, str, bool]:
    """The checked `task`, `task_start` and `retryable` options of tool `name`."""
    task = options.get("task", False)
    if task not in (True, False, "required"):
        raise ValueError(f"tool {name!r}: `task` must be True, False or 'required', got {task!r}")
    task_start = options.get("task_start", "call")
    if task_start not in ("call", "manual"):
        raise ValueError(f"tool {name!r}: `task_start` must be 'call' or 'manual', got {task_start!r}")
    retryable = options.get("retryable", False)
    if not isinstance(retryable, bool):
        raise TypeError(f"tool {name!r}: `retryable` must be True or False, got {retryable!r}")
    return task, task_start, retryable


def _looks_like_content(value: dict[str, Any]) -> bool:
    return "type" in value and value.get("type") in ("text", "image", "audio", "resource", "resource_link")


def error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}
