"""Resources and resource templates: a URI (or URI template) bound to a function."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

import pydantic

from mcp_asgi.components.content import to_json_text
from mcp_asgi.components.errors import call_user_code
from mcp_asgi.components.signature import (
    FunctionArguments,
    callable_name,
    describe_validation_error,
    docstring_description,
)
from mcp_asgi.protocol.jsonrpc import invalid_params
from mcp_asgi.protocol.scopes import validate_scopes

# Compiled on first use (by `re`'s cache), not by `import mcp_asgi`: only resource definitions
# are parsed with it.
_PARAM = r"{(\w+)(\*?)}"


def is_template(uri: str) -> bool:
    return re.search(_PARAM, uri) is not None


def _contents(uri: str, value: Any, mime_type: str | None) -> list[dict[str, Any]]:
    if isinstance(value, (bytes, bytearray)):
        return [
            {
                "uri": uri,
                "mimeType": mime_type or "application/octet-stream",
                "blob": base64.b64encode(bytes(value)).decode("ascii"),
            }
        ]
    if isinstance(value, str):
        return [{"uri": uri, "mimeType": mime_type or "text/plain", "text": value}]
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(item, dict) and ("text" in item or "blob" in item) for item in value)
    ):
        return [{"uri": uri, **item} if "uri" not in item else dict(item) for item in value]
    if isinstance(value, dict) and ("text" in value or "blob" in value) and "uri" in value:
        return [dict(value)]
    return [{"uri": uri, "mimeType": mime_type or "application/json", "text": to_json_text(value)}]


class _ResourceBase:
    def __init__(
        self,
        fn: Callable[..., Any],
        uri: str,
        *,
        name: str | None,
        title: str | None,
        description: str | None,
        mime_type: str | None,
        annotations: dict[str, Any] | None,
        icons: list[dict[str, Any]] | None,
        meta: dict[str, Any] | None,
        size: int | None = None,
        localns: dict[str, Any] | None = None,
        mask_error_details: bool = False,
        scopes: Any = None,
    ) -> None:
        self.fn = fn
        self.mask_error_details = mask_error_details
        self.uri = uri
        self.name = name or callable_name(fn)
        # OAuth scopes an HTTP request must be granted to read it (else 403).
        self.scopes = validate_scopes(scopes, f"resource {uri!r}")
        self.mime_type = mime_type
        self.arguments = FunctionArguments(fn, model_name=f"{self.name}_resource_arguments", localns=localns)
        description = description if description is not None else docstring_description(fn)
        definition: dict[str, Any] = {"name": self.name}
        if title is not None:
            definition["title"] = title
        if description:
            definition["description"] = description
        if mime_type:
            definition["mimeType"] = mime_type
        if size is not None:
            definition["size"] = size
        if annotations:
            definition["annotations"] = annotations
        if icons:
            definition["icons"] = icons
        if meta:
            definition["_meta"] = meta
        self.definition = definition

    async def _read(self, uri: str, arguments: dict[str, Any], context: Any) -> list[dict[str, Any]]:
        try:
            kwargs = self.arguments.validate(arguments)
        except pydantic.ValidationError as exc:
            raise invalid_params(f"Invalid parameters for resource {uri}: {describe_validation_error(exc)}") from None
        value = await call_user_code(
            self.arguments.call, kwargs, context, what=f"Error reading resource '{uri}'", mask=self.mask_error_details
        )
        return _contents(uri, value, self.mime_type)


class Resource(_ResourceBase):
    """A resource with a fixed URI."""

    def __init__(self, fn: Callable[..., Any], uri: str, **options: Any) -> None:
        super().__init__(fn, uri, **options)
        self.definition = {"uri": uri, **self.definition}

    async def read(self, context: Any) -> list[dict[str, Any]]:
        return await self._read(self.uri, {}, context)


class ResourceTemplate(_ResourceBase):
    """A resource whose URI has `{param}` parts (`{path*}` matches across slashes)."""

    def __init__(self, fn: Callable[..., Any], uri_template: str, **options: Any) -> None:
        super().__init__(fn, uri_template, **options)
        self.definition = {"uriTemplate": uri_template, **self.definition}
        pattern, last = [], 0
        self.params: list[str] = []
        for match in re.finditer(_PARAM, uri_template):
            pattern.append(re.escape(uri_template[last : match.start()]))
            name, star = match.group(1), match.group(2)
            pattern.append(f"(?P<{name}>.+)" if star else f"(?P<{name}>[^/]+)")
            self.params.append(name)
            last = match.end()
        pattern.append(re.escape(uri_template[last:]))
        self._regex = re.compile("".join(pattern) + r"\Z")
        unknown = [p for p in self.params if p not in self.arguments.parameter_names]
        if unknown and not self.arguments.accepts_any:
            raise ValueError(
                f"Resource template {uri_template!r} has parameters {unknown} that "
                f"{self.name}() does not accept; add them to its signature"
            )
        missing = [p["name"] for p in self.arguments.describe() if p["required"] and p["name"] not in self.params]
        if missing:
            raise ValueError(
                f"{self.name}() requires {missing}, which the URI template {uri_template!r} does not provide"
            )

    def match(self, uri: str) -> dict[str, str] | None:
        found = self._regex.match(uri)
        return found.groupdict() if found else None

    async def read(self, uri: str, params: dict[str, str], context: Any) -> list[dict[str, Any]]:
        return await self._read(uri, params, context)
