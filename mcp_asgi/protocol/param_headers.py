"""Tool parameters mirrored into `Mcp-Param-{Name}` HTTP headers (`x-mcp-header`, SEP-2243).

A tool's input schema may mark a parameter with `"x-mcp-header": "Region"`; clients then
send its value as `Mcp-Param-Region` so load balancers and gateways can route on it without
reading the body. The server must check that the header says the same as the body, or a
proxy and the tool could act on two different values.
"""

from __future__ import annotations

import base64
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import pydantic

from mcp_asgi.protocol.jsonrpc import HEADER_MISMATCH, MCPError

__all__ = ["MirroredParam", "ParamHeader", "param_headers", "validate_param_headers"]

ANNOTATION = "x-mcp-header"
HEADER_PREFIX = "mcp-param-"

# RFC 9110 section 5.1: field-name = token = 1*tchar. Compiled on first use (by `re`'s cache),
# not by `import mcp_asgi`: only x-mcp-header names are checked with it, when a tool is defined.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 9110 field values: visible ASCII, space and horizontal tab.
_FIELD_VALUE = re.compile(r"[\x20-\x7e\t]*")
_JSON_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_SENTINEL_PREFIX = "=?base64?"
_SENTINEL_SUFFIX = "?="
_PRIMITIVES = ("string", "integer", "boolean")
# Keywords whose values are instance data, not schemas: an "x-mcp-header" key inside a
# `default` or `examples` value is just data.
_DATA_KEYWORDS = frozenset({"default", "examples", "const", "enum"})
# Keywords whose values map names to schemas (the names are not keywords themselves).
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


# Not a dataclass: `import mcp_asgi` loads this module, and creating a dataclass exec()s the
# source of its methods (ten of them were a quarter of our import cost).
class MirroredParam:
    """One parameter a client mirrors into a header."""

    __slots__ = ("path", "name", "header", "kind")

    def __init__(self, path: tuple[str, ...], name: str, header: str, kind: str) -> None:
        self.path = path  # chain of `properties` keys from the schema root
        self.name = name  # the x-mcp-header value as written, e.g. "Region"
        self.header = header  # lower-cased full header name, e.g. "mcp-param-region"
        self.kind = kind  # "string" | "integer" | "boolean"

    def _key(self) -> tuple[tuple[str, ...], str, str, str]:
        return (self.path, self.name, self.header, self.kind)

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, MirroredParam) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"MirroredParam(path={self.path!r}, name={self.name!r}, header={self.header!r}, kind={self.kind!r})"

    @property
    def display(self) -> str:
        return f"Mcp-Param-{self.name}"


def ParamHeader(name: str, **field_kwargs: Any) -> Any:  # noqa: N802 - reads like a type at the call site
    """Mark a tool parameter to be mirrored into the `Mcp-Param-{name}` HTTP header.

        @mcp.tool()
        def query(region: Annotated[str, ParamHeader("Region")], sql: str) -> str: ...

    Other keyword arguments go to `pydantic.Field` (`description=...`, `ge=...`).
    """
    _check_name(name, f"ParamHeader({name!r})")
    extra = field_kwargs.pop("json_schema_extra", None)
    if extra is None:
        extra = {}
    elif not isinstance(extra, dict):
        raise TypeError("ParamHeader() `json_schema_extra` must be a dict when combined with an x-mcp-header name")
    return pydantic.Field(json_schema_extra={**extra, ANNOTATION: name}, **field_kwargs)


def param_headers(input_schema: dict[str, Any]) -> tuple[MirroredParam, ...]:
    """The `x-mcp-header` annotations of a tool's input schema.

    Raises ValueError naming the property when an annotation breaks the spec's constraints;
    such a tool definition would be dropped by every conforming client.
    """
    if not isinstance(input_schema, dict):
        return ()
    found: list[MirroredParam] = []
    _walk(input_schema, (), input_schema, found)
    seen: dict[str, MirroredParam] = {}
    for spec in found:
        other = seen.get(spec.header)
        if other is not None:
            raise ValueError(
                f"x-mcp-header {spec.name!r} on property {_dotted(spec.path)!r} duplicates {other.name!r} on "
                f"{_dotted(other.path)!r}; header names are case-insensitive and must be unique within a tool"
            )
        seen[spec.header] = spec
    return tuple(found)


def _walk(schema: dict[str, Any], path: tuple[str, ...], root: dict[str, Any], found: list[MirroredParam]) -> None:
    """Collect annotations reachable through `properties` only; reject any found elsewhere."""
    if ANNOTATION in schema and path:
        name = schema[ANNOTATION]
        where = f"property {_dotted(path)!r}"
        _check_name(name, where)
        found.append(MirroredParam(path, name, HEADER_PREFIX + name.lower(), _kind(schema, root, where)))
    elif ANNOTATION in schema:
        raise ValueError("x-mcp-header cannot annotate the input schema itself, only one of its properties")
    for keyword, value in schema.items():
        if keyword == "properties" and isinstance(value, dict):
            for key, child in value.items():
                if isinstance(child, dict):
                    _walk(child, (*path, key), root, found)
        elif keyword != ANNOTATION and keyword not in _DATA_KEYWORDS:
            _reject_nested(value, keyword, path, keyword in _SCHEMA_MAPS)


def _reject_nested(value: Any, via: str, path: tuple[str, ...], is_map: bool = False) -> None:
    """Raise if an annotation sits anywhere under a keyword that is not a `properties` chain."""
    if isinstance(value, list):
        for item in value:
            _reject_nested(item, via, path)
        return
    if not isinstance(value, dict):
        return
    if is_map:
        for child in value.values():
            _reject_nested(child, via, path)
        return
    if ANNOTATION in value:
        raise ValueError(
            f"x-mcp-header {value[ANNOTATION]!r} under `{via}` of {_location(path)} is not statically reachable: "
            "annotated properties must be reached from the schema root through `properties` only "
            "(not items, anyOf/oneOf/allOf/not, if/then/else, $ref or $defs)"
        )
    for keyword, child in value.items():
        if keyword not in _DATA_KEYWORDS:
            _reject_nested(child, via, path, keyword in _SCHEMA_MAPS)


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"x-mcp-header on {where} must be a non-empty string, got {name!r}")
    if not re.fullmatch(_TOKEN, name):
        raise ValueError(
            f"x-mcp-header {name!r} on {where} is not a valid HTTP header name: use letters, digits and "
            "!#$%&'*+-.^_`|~ only (RFC 9110 token; no spaces, colons or control characters)"
        )


def _kind(schema: dict[str, Any], root: dict[str, Any], where: str) -> str:
    """The primitive type of an annotated property; `T | None` and local `$ref`s are looked through."""
    types = _types(schema, root, depth=0)
    types.discard("null")
    if len(types) == 1:
        kind = types.pop()
        if kind in _PRIMITIVES:
            return kind
        if kind == "number":
            raise ValueError(
                f"x-mcp-header on {where} is not allowed on a `number` parameter; use `integer` or `string`"
            )
    raise ValueError(
        f"x-mcp-header on {where} needs a parameter of type string, integer or boolean, "
        f"found {sorted(types) or 'no type'}"
    )


def _types(schema: Any, root: dict[str, Any], depth: int) -> set[str]:
    if not isinstance(schema, dict) or depth > 8:
        return set()
    declared = schema.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {item for item in declared if isinstance(item, str)}
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if isinstance(options, list):
            types: set[str] = set()
            for option in options:
                types |= _types(option, root, depth + 1) or {"unknown"}
            return types
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        return _types(target, root, depth + 1)
    return set()


def validate_param_headers(specs: tuple[MirroredParam, ...], arguments: Any, headers: dict[str, str]) -> None:
    """Check each mirrored header against the `tools/call` arguments.

    Raises HeaderMismatch (-32020, HTTP 400) when a value present in the body has no header,
    a header is malformed, or the decoded header differs from the body value. A header for
    an absent or null value is ignored.
    """
    for spec in specs:
        value = _value_at(arguments, spec.path)
        raw = headers.get(spec.header)
        if value is None:
            continue
        if raw is None:
            raise _mismatch(f"the {spec.display} header is required because arguments include {_dotted(spec.path)!r}")
        if not _FIELD_VALUE.fullmatch(raw):
            raise _mismatch(
                f"the {spec.display} header contains characters not allowed in a header value; "
                "non-ASCII values must be sent as =?base64?...?="
            )
        text = decode_header_value(raw.strip(" \t"))
        if text is None:
            raise _mismatch(f"the {spec.display} header has a malformed =?base64?...?= value {raw!r}")
        if not _same(text, value):
            raise _mismatch(
                f"{spec.display} header value {text!r} does not match body value {value!r} for {_dotted(spec.path)!r}"
            )


def _value_at(arguments: Any, path: tuple[str, ...]) -> Any:
    value = arguments
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def decode_header_value(value: str) -> str | None:
    """Undo the `=?base64?...?=` sentinel (Mcp-Name, Mcp-Param-*) strictly; None when it is malformed."""
    if len(value) >= len(_SENTINEL_PREFIX) + len(_SENTINEL_SUFFIX) and (
        value.startswith(_SENTINEL_PREFIX) and value.endswith(_SENTINEL_SUFFIX)
    ):
        try:
            return base64.b64decode(value[len(_SENTINEL_PREFIX) : -len(_SENTINEL_SUFFIX)], validate=True).decode()
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text ("=?base64?\xff?=")
            return None
    return value


def _same(text: str, value: Any) -> bool:
    # Compare by the body value's JSON type: that is what the client converted to text.
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, (int, float)):
        if not _JSON_NUMBER.fullmatch(text):
            return False
        try:
            return Decimal(text) == Decimal(value if isinstance(value, int) else repr(value))
        except (InvalidOperation, ValueError):
            return False
    if isinstance(value, str):
        return text == value
    return False  # objects and arrays cannot be mirrored


def _mismatch(message: str) -> MCPError:
    return MCPError(HEADER_MISMATCH, f"Header mismatch: {message}", http_status=400)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _location(path: tuple[str, ...]) -> str:
    return f"property {_dotted(path)!r}" if path else "the schema root"
