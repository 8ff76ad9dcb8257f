"""Prompts: a function returning text or messages becomes a prompt template."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pydantic

from mcp_asgi.components.content import reads_files, to_content
from mcp_asgi.components.errors import call_user_code
from mcp_asgi.components.signature import (
    FunctionArguments,
    callable_name,
    describe_validation_error,
    docstring_description,
)
from mcp_asgi.protocol.jsonrpc import invalid_params
from mcp_asgi.protocol.scopes import validate_scopes


def __getattr__(name: str) -> Any:
    # PromptMessage lives in its own module, imported when first used: a pydantic model class
    # costs pydantic's model machinery, a fifth of `import mcp_asgi`.
    if name == "PromptMessage":
        from mcp_asgi.components.prompt_message import PromptMessage

        return PromptMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _message(value: Any) -> dict[str, Any]:
    message_module = sys.modules.get("mcp_asgi.components.prompt_message")
    if message_module is not None and isinstance(value, message_module.PromptMessage):
        role, content = value.role, value.content
    elif isinstance(value, dict) and "role" in value and "content" in value:
        role, content = value["role"], value["content"]
    else:
        role, content = "user", value
    if role not in ("user", "assistant"):
        raise ValueError(f"a prompt message role must be 'user' or 'assistant', not {role!r}")
    blocks = to_content(content)
    if len(blocks) != 1:
        raise ValueError("each prompt message must hold exactly one content block")
    return {"role": role, "content": blocks[0]}


class Prompt:
    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        icons: list[dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
        localns: dict[str, Any] | None = None,
        mask_error_details: bool = False,
        scopes: Any = None,
    ) -> None:
        self.fn = fn
        self.mask_error_details = mask_error_details
        self.name = name or callable_name(fn)
        # OAuth scopes an HTTP request must be granted to get it (else 403).
        self.scopes = validate_scopes(scopes, f"prompt {self.name!r}")
        self.arguments = FunctionArguments(fn, model_name=f"{self.name}_prompt_arguments", localns=localns)
        self.description = description if description is not None else docstring_description(fn)
        definition: dict[str, Any] = {"name": self.name}
        if title is not None:
            definition["title"] = title
        if self.description:
            definition["description"] = self.description
        definition["arguments"] = self.arguments.describe()
        if icons:
            definition["icons"] = icons
        if meta:
            definition["_meta"] = meta
        self.definition = definition

    async def render(self, arguments: Any, context: Any) -> dict[str, Any]:
        if arguments is not None and not isinstance(arguments, dict):
            raise invalid_params(f"Invalid arguments for prompt '{self.name}': arguments must be an object")
        try:
            kwargs = self.arguments.validate(arguments)
        except pydantic.ValidationError as exc:
            raise invalid_params(
                f"Invalid arguments for prompt '{self.name}': {describe_validation_error(exc)}"
            ) from None
        what = f"Error rendering prompt '{self.name}'"
        value = await call_user_code(self.arguments.call, kwargs, context, what=what, mask=self.mask_error_details)
        items = value if isinstance(value, (list, tuple)) else [value]
        if reads_files(items):  # media given by path: read the files off the event loop
            messages = await anyio.to_thread.run_sync(lambda: [_message(item) for item in items])
        else:
            messages = [_message(item) for item in items]
        result: dict[str, Any] = {"messages": messages}
        if self.description:
            result["description"] = self.description
        return result
