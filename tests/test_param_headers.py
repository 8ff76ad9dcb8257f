from __future__ import annotations

from typing import Annotated, Any

import pydantic
import pytest

from mcp_asgi.protocol.jsonrpc import HEADER_MISMATCH, MCPError
from mcp_asgi.protocol.param_headers import MirroredParam, ParamHeader, param_headers, validate_param_headers


def schema(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


def annotated(kind: Any, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "x-mcp-header": name, **extra}


# Schema parsing.


def test_finds_top_level_and_nested_annotations() -> None:
    specs = param_headers(
        schema(
            region=annotated("string", "Region"),
            sql={"type": "string"},
            options={"type": "object", "properties": {"limit": annotated("integer", "Row-Limit")}},
            dry={"type": ["boolean", "null"], "x-mcp-header": "Dry_Run"},
        )
    )
    assert specs == (
        MirroredParam(("region",), "Region", "mcp-param-region", "string"),
        MirroredParam(("options", "limit"), "Row-Limit", "mcp-param-row-limit", "integer"),
        MirroredParam(("dry",), "Dry_Run", "mcp-param-dry_run", "boolean"),
    )


def test_schema_without_annotations_has_no_headers() -> None:
    assert param_headers(schema(a={"type": "string"}, b={"type": "array", "items": {"type": "string"}})) == ()


@pytest.mark.parametrize(
    "bad_schema",
    [
        schema(tags={"type": "array", "items": annotated("string", "Tag")}),
        schema(x={"anyOf": [annotated("string", "X"), {"type": "integer"}]}),
        schema(x={"oneOf": [annotated("string", "X")]}),
        schema(x={"allOf": [annotated("string", "X")]}),
        schema(x={"not": annotated("string", "X")}),
        schema(x={"if": {"type": "string"}, "then": annotated("string", "X")}),
        schema(x={"$ref": "#/$defs/Inner"}) | {"$defs": {"Inner": annotated("string", "X")}},
        schema(o={"type": "object", "additionalProperties": annotated("string", "X")}),
        schema(o={"type": "array", "items": {"type": "object", "properties": {"v": annotated("string", "X")}}}),
    ],
)
def test_annotation_that_is_not_statically_reachable_is_invalid(bad_schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not statically reachable"):
        param_headers(bad_schema)


def test_annotation_text_inside_default_value_is_data() -> None:
    assert param_headers(schema(o={"type": "object", "default": {"x-mcp-header": "Nope"}})) == ()


def test_number_parameter_is_invalid() -> None:
    with pytest.raises(ValueError, match="'price'.*number"):
        param_headers(schema(price=annotated("number", "Price")))


@pytest.mark.parametrize("kind", ["object", "array", None])
def test_non_primitive_parameter_is_invalid(kind: str | None) -> None:
    prop = {"x-mcp-header": "P"} if kind is None else annotated(kind, "P")
    with pytest.raises(ValueError, match="'p'.*string, integer or boolean"):
        param_headers(schema(p=prop))


def test_duplicate_names_are_invalid_case_insensitively() -> None:
    with pytest.raises(ValueError, match="'REGION'.*duplicates 'Region'"):
        param_headers(
            schema(
                a=annotated("string", "Region"),
                o={"type": "object", "properties": {"b": annotated("string", "REGION")}},
            )
        )


@pytest.mark.parametrize("name", ["", "Has Space", "colon:name", "line\nbreak", "cr\r", "tab\t", "é", 42, None])
def test_names_that_are_not_http_tokens_are_invalid(name: Any) -> None:
    with pytest.raises(ValueError, match="'r'"):
        param_headers(schema(r={"type": "string", "x-mcp-header": name}))


def test_token_punctuation_is_valid() -> None:
    assert param_headers(schema(r=annotated("string", "a!#$%&'*+-.^_`|~9")))[0].header == "mcp-param-a!#$%&'*+-.^_`|~9"


# ParamHeader() and the schema pydantic generates from a tool signature.


def test_header_lands_in_the_pydantic_schema() -> None:
    model = pydantic.create_model(
        "QueryArgs",
        region=(Annotated[str, ParamHeader("Region", description="Where to run")], ...),
        limit=(Annotated[int | None, ParamHeader("Limit")], None),
        sql=(str, ...),
    )
    generated = model.model_json_schema()
    assert generated["properties"]["region"]["x-mcp-header"] == "Region"
    assert generated["properties"]["region"]["description"] == "Where to run"
    assert [(s.path, s.header, s.kind) for s in param_headers(generated)] == [
        (("region",), "mcp-param-region", "string"),
        (("limit",), "mcp-param-limit", "integer"),
    ]


def test_header_with_enum_type_resolves_the_ref() -> None:
    from enum import Enum

    class Region(str, Enum):
        us = "us-west1"

    model = pydantic.create_model("Args", region=(Annotated[Region, ParamHeader("Region")], ...))
    assert param_headers(model.model_json_schema())[0].kind == "string"


def test_header_rejects_a_bad_name_at_declaration() -> None:
    with pytest.raises(ValueError, match="Header\\('Bad Name'\\)"):
        ParamHeader("Bad Name")


# Validation against a tools/call body.

STRING = (MirroredParam(("greeting",), "Greeting", "mcp-param-greeting", "string"),)
INTEGER = (MirroredParam(("n",), "N", "mcp-param-n", "integer"),)
BOOLEAN = (MirroredParam(("flag",), "Flag", "mcp-param-flag", "boolean"),)


def mismatch(specs: tuple[MirroredParam, ...], arguments: Any, headers: dict[str, str]) -> MCPError:
    with pytest.raises(MCPError) as caught:
        validate_param_headers(specs, arguments, headers)
    error = caught.value
    assert error.code == HEADER_MISMATCH
    assert error.http_status == 400
    assert error.message.startswith("Header mismatch: ")
    return error


@pytest.mark.parametrize(
    ("header", "body"),
    [
        ("=?base64?SGVsbG8=?=", "Hello"),
        ("SGVsbG8=", "SGVsbG8="),
        ("=?base64?SGVsbG8=", "=?base64?SGVsbG8="),  # sentinel-shaped on one side only: literal
        ("=?base64?SGVsbG8sIOS4lueVjA==?=", "Hello, 世界"),
        ("=?base64?IHBhZGRlZCA=?=", " padded "),
        ("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?="),
        ("  us-west1\t", "us-west1"),
        ("", ""),
    ],
)
def test_matching_string_headers_pass(header: str, body: str) -> None:
    validate_param_headers(STRING, {"greeting": body}, {"mcp-param-greeting": header})


@pytest.mark.parametrize("header", ["=?base64?SGVsbG8?=", "=?base64?SGVs!!!bG8=?=", "=?base64?//79?="])
def test_malformed_base64_is_a_mismatch(header: str) -> None:
    error = mismatch(STRING, {"greeting": "Hello"}, {"mcp-param-greeting": header})
    assert "malformed" in error.message


def test_missing_header_for_present_value_is_a_mismatch() -> None:
    error = mismatch(STRING, {"greeting": "test-value"}, {})
    assert "Mcp-Param-Greeting header is required" in error.message


def test_different_value_is_a_mismatch_naming_both() -> None:
    error = mismatch(STRING, {"greeting": "bar"}, {"mcp-param-greeting": "foo"})
    assert "'foo'" in error.message and "'bar'" in error.message


def test_raw_non_ascii_header_is_a_mismatch() -> None:
    # header_map() decodes bytes as latin-1, so raw UTF-8 arrives as characters above 0x7E.
    raw = "Hello, 世界".encode().decode("latin-1")
    error = mismatch(STRING, {"greeting": "Hello, 世界"}, {"mcp-param-greeting": raw})
    assert "base64" in error.message


def test_control_character_in_header_is_a_mismatch() -> None:
    mismatch(STRING, {"greeting": "a\x01b"}, {"mcp-param-greeting": "a\x01b"})


@pytest.mark.parametrize("arguments", [{}, {"greeting": None}, None, {"other": 1}])
def test_absent_or_null_value_needs_no_header_and_ignores_one(arguments: Any) -> None:
    validate_param_headers(STRING, arguments, {})
    validate_param_headers(STRING, arguments, {"mcp-param-greeting": "anything"})


@pytest.mark.parametrize(("header", "body"), [("42", 42), ("42.0", 42), ("-7", -7), ("4.2e1", 42), ("42", 42.0)])
def test_integers_compare_numerically(header: str, body: Any) -> None:
    validate_param_headers(INTEGER, {"n": body}, {"mcp-param-n": header})


@pytest.mark.parametrize("header", ["43", "forty-two", "42abc", "0x2a", "4_2", "NaN", "Infinity", ""])
def test_integer_mismatches(header: str) -> None:
    mismatch(INTEGER, {"n": 42}, {"mcp-param-n": header})


def test_large_integers_compare_exactly() -> None:
    validate_param_headers(INTEGER, {"n": 2**53 - 1}, {"mcp-param-n": str(2**53 - 1)})
    mismatch(INTEGER, {"n": 2**53 - 1}, {"mcp-param-n": str(2**53)})


def test_booleans_compare_as_lowercase_words() -> None:
    validate_param_headers(BOOLEAN, {"flag": True}, {"mcp-param-flag": "true"})
    validate_param_headers(BOOLEAN, {"flag": False}, {"mcp-param-flag": "false"})
    mismatch(BOOLEAN, {"flag": True}, {"mcp-param-flag": "True"})
    mismatch(BOOLEAN, {"flag": True}, {"mcp-param-flag": "1"})
    mismatch(BOOLEAN, {"flag": False}, {"mcp-param-flag": "true"})


def test_nested_path_is_read_from_the_arguments() -> None:
    specs = param_headers(schema(options={"type": "object", "properties": {"limit": annotated("integer", "Limit")}}))
    validate_param_headers(specs, {"options": {"limit": 5}}, {"mcp-param-limit": "5"})
    validate_param_headers(specs, {"options": "not an object"}, {})
    mismatch(specs, {"options": {"limit": 5}}, {"mcp-param-limit": "6"})


def test_object_body_value_cannot_match_a_header() -> None:
    mismatch(STRING, {"greeting": {"a": 1}}, {"mcp-param-greeting": "{}"})


def test_header_in_a_tool_signature_reaches_the_tool_input_schema() -> None:
    from mcp_asgi.components.signature import FunctionArguments

    def query(
        region: Annotated[str, ParamHeader("Region")], sql: str, _limit: Annotated[int, ParamHeader("Limit")] = 10
    ) -> str:
        return sql

    specs = param_headers(FunctionArguments(query, model_name="query").json_schema())
    # `_limit` is kept under an alias in the model; the schema and the header path use the parameter name.
    assert [(s.path, s.name) for s in specs] == [(("region",), "Region"), (("_limit",), "Limit")]
