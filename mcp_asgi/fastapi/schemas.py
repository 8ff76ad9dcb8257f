"""A route's tool schemas, read from its FastAPI OpenAPI operation.

Input: path, query, header and cookie parameters and the request body become one object
schema. Output: the first 2xx JSON response schema, when the route declares a response model.
`$ref`s into the OpenAPI document are inlined so clients that do not resolve references still
see the whole shape; a model that contains itself keeps a `$ref` into the tool schema's own
`$defs`, and a document so entangled that inlining would grow past a budget keeps every
reference below the outermost one in `$defs` instead (bounded either way).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["BODY_MEDIA_TYPES", "RouteShape", "output_schema", "route_shape"]

# What a route may accept as its body and still be called with arguments from a model.
BODY_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded")
# Schema nodes inlining may create per tool schema before it keeps references in `$defs` instead.
INLINE_BUDGET = 20_000
_LOCATIONS = ("path", "query", "header", "cookie")


class UnsupportedRoute(ValueError):
    """The route cannot be offered as a tool (a multipart body, say); the message says why."""


class _TooBig(Exception):
    pass


class _Resolver:
    """Resolves `$ref`s of one OpenAPI document into one self-contained JSON Schema."""

    def __init__(self, document: dict[str, Any], *, inline: bool = True) -> None:
        self.document = document
        self.inline = inline
        self.defs: dict[str, Any] = {}
        self._wanted: dict[str, str] = {}  # $defs name -> JSON pointer
        self._stack: list[str] = []
        self._nodes = 0

    def resolve(self, schema: Any) -> Any:
        resolved = self._walk(schema)
        # Definitions kept by reference, and the ones they reach, resolved until none is new.
        while len(self.defs) < len(self._wanted):
            for name, pointer in list(self._wanted.items()):
                if name not in self.defs:
                    self.defs[name] = {}  # claimed before walking: a self-reference stays a $ref
                    self._stack.append(pointer)
                    self.defs[name] = self._walk(self._target(pointer))
                    self._stack.pop()
        return resolved

    def _walk(self, node: Any) -> Any:
        self._nodes += 1
        if self.inline and self._nodes > INLINE_BUDGET:
            raise _TooBig
        if isinstance(node, list):
            return [self._walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            siblings = {key: self._walk(value) for key, value in node.items() if key != "$ref"}
            # Past the budget only the outermost reference (a body model, say) is inlined: the
            # tool schema keeps its properties at the top, and everything deeper is in $defs.
            if ref not in self._stack and (self.inline or not self._stack):
                self._stack.append(ref)
                target = self._walk(self._target(ref))
                self._stack.pop()
                return {**target, **siblings} if isinstance(target, dict) else target
            return {"$ref": f"#/$defs/{self._def_name(ref)}", **siblings}
        return {key: self._walk(value) for key, value in node.items()}

    def _def_name(self, pointer: str) -> str:
        base = pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~") or "def"
        name, n = base, 1
        while self._wanted.get(name, pointer) != pointer:
            n += 1
            name = f"{base}_{n}"
        self._wanted[name] = pointer
        return name

    def _target(self, pointer: str) -> Any:
        node: Any = self.document
        for part in pointer[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                # FastAPI never writes a dangling reference; a hand-edited document might.
                return {}
        return node


def resolve_schema(document: dict[str, Any], schema: Any) -> dict[str, Any]:
    """`schema` with its references resolved; cycles (and oversized documents) keep a root `$defs`."""
    resolver = _Resolver(document)
    try:
        resolved = resolver.resolve(schema)
    except _TooBig:
        resolver = _Resolver(document, inline=False)
        resolved = resolver.resolve(schema)
    resolved = resolved if isinstance(resolved, dict) else {}
    if resolver.defs:
        resolved = {**resolved, "$defs": {**resolved.get("$defs", {}), **resolver.defs}}
    return resolved


# Plain classes, not dataclasses: creating a dataclass exec()s the source of its methods, a cost
# `import mcp_asgi.fastapi` would pay for records nothing compares or prints.
class Parameter:
    """One HTTP parameter of the route, and the tool argument that fills it."""

    __slots__ = ("argument", "name", "location", "schema")

    def __init__(self, argument: str, name: str, location: str, schema: dict[str, Any]) -> None:
        self.argument = argument
        self.name = name
        self.location = location
        self.schema = schema


class RouteShape:
    """How a tool's arguments map onto one HTTP request of the route."""

    __slots__ = ("input_schema", "parameters", "body_encoding", "body_argument")

    def __init__(self, input_schema: dict[str, Any], parameters: list[Parameter]) -> None:
        self.input_schema = input_schema
        self.parameters = parameters
        # None: no body; "json" or "form": how it is encoded.
        self.body_encoding: str | None = None
        # Flattened body: every argument that is not a parameter goes into the body. Otherwise the
        # whole body is the one argument named here.
        self.body_argument: str | None = None


def route_shape(document: dict[str, Any], operation: dict[str, Any], skip_headers: frozenset[str]) -> RouteShape:
    """The tool's input schema and argument mapping for one operation.

    `skip_headers` (lower case) are forwarded from the MCP request, so they are never
    arguments; "cookie" among them keeps cookie parameters out too.
    """
    body = _body_schema(operation)
    body_schema = body[1] if body is not None else None
    everything = resolve_schema(document, {"p": operation.get("parameters", []), "b": body_schema})
    defs = everything.pop("$defs", None)
    properties: dict[str, Any] = {}
    required: list[str] = []
    parameters: list[Parameter] = []
    for param in everything["p"]:
        location, name = param.get("in"), param.get("name")
        if location not in _LOCATIONS or not isinstance(name, str):
            continue
        forwarded = "cookie" if location == "cookie" else name.lower() if location == "header" else None
        if forwarded in skip_headers:
            continue
        argument = name if name not in properties else f"{location}_{name}"
        schema = dict(param.get("schema") or {})
        if param.get("description") and "description" not in schema:
            schema["description"] = param["description"]
        properties[argument] = schema
        if param.get("required") or location == "path":
            required.append(argument)
        parameters.append(Parameter(argument, name, location, schema))
    shape = RouteShape(input_schema={}, parameters=parameters)
    if body is not None:
        encoding, _, body_required = body
        schema = everything["b"] if isinstance(everything["b"], dict) else {}
        shape.body_encoding = encoding
        fields = schema.get("properties") if schema.get("type") == "object" else None
        if isinstance(fields, dict) and fields and not set(fields) & set(properties):
            # The body's fields sit beside the parameters, as a model would fill a form.
            properties.update(fields)
            if body_required:
                required.extend(name for name in schema.get("required", []) if name in fields)
        else:
            # A body that is not a plain object, or whose field names clash with a parameter:
            # one argument holds all of it, so no value is ever sent to the wrong place.
            argument = "body" if "body" not in properties else "request_body"
            properties[argument] = schema
            if body_required:
                required.append(argument)
            shape.body_argument = argument
    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = required
    if defs:
        input_schema["$defs"] = defs
    shape.input_schema = input_schema
    return shape


def _body_schema(operation: dict[str, Any]) -> tuple[str, Any, bool] | None:
    body = operation.get("requestBody")
    if not isinstance(body, dict):
        return None
    content = body.get("content") or {}
    for media_type, encoding in zip(BODY_MEDIA_TYPES, ("json", "form"), strict=True):
        if media_type in content:
            return encoding, (content[media_type] or {}).get("schema") or {}, bool(body.get("required"))
    given = ", ".join(content) or "of no known type"
    raise UnsupportedRoute(f"its request body is {given} (supported: JSON and urlencoded forms)")


def output_schema(document: dict[str, Any], operation: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The tool's output schema from the first 2xx JSON response, and whether results are wrapped.

    MCP asks for an object schema: any other shape becomes `{"result": <schema>}` and each
    result is wrapped to match. `(None, False)` when the route declares no response model.
    """
    responses = operation.get("responses") or {}
    for status in sorted(str(s) for s in responses):
        if not status.startswith("2"):
            continue
        content = (responses[status] or {}).get("content") or {}
        schema = (content.get("application/json") or {}).get("schema")
        if not schema:
            continue
        resolved = resolve_schema(document, copy.deepcopy(schema))
        defs = resolved.pop("$defs", None)
        resolved.pop("title", None)
        wrap = resolved.get("type") != "object"
        if wrap:
            resolved = {"type": "object", "properties": {"result": resolved}, "required": ["result"]}
        if defs:
            resolved["$defs"] = defs
        return resolved, wrap
    return None, False
