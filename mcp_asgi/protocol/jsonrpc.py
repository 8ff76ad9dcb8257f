"""JSON-RPC 2.0 envelopes, error codes and the one typed error the core raises.

Messages stay plain dicts: building a pydantic model per envelope costs more than
the whole dispatch of a trivial tool call, and the transports only need a few keys.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import pydantic_core

JSONRPC = "2.0"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Used by 2025 revisions for "resource not found"; 2026-07-28 replaced it with INVALID_PARAMS.
RESOURCE_NOT_FOUND = -32002
# Codes the 2026-07-28 revision defines in its reserved range.
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022

RequestId = str | int

# How deeply a message may nest objects and arrays. Decoding is the one place that enforces it:
# everything after it (argument validation, `requestState` digests, logging, encoding the reply,
# which pydantic-core refuses past ~250 levels) recurses on the same structure, with less stack
# left when the app sits behind middleware. 200 leaves room for an echoed value plus the reply's
# envelope, and is far deeper than any tool argument a model writes.
MAX_JSON_DEPTH = 200

logger = logging.getLogger("mcp_asgi")


class MCPError(Exception):
    """A protocol error: becomes one JSON-RPC error response (and, on HTTP, a status code).

    `http_status` is the status the Streamable HTTP transport answers with; the
    transports that have no status (stdio, legacy SSE) ignore it. `headers` go with
    that status (a 403's `WWW-Authenticate`), on a response that has not started yet:
    once a reply streams as SSE, the error is one more event and its headers are lost.
    """

    def __init__(
        self,
        code: int,
        message: str,
        data: Any = None,
        *,
        http_status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status
        self.headers = headers

    def to_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message: str, data: Any = None, *, http_status: int = 200) -> MCPError:
    return MCPError(INVALID_PARAMS, message, data, http_status=http_status)


def result_response(request_id: RequestId, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": request_id, "result": result}


def error_response(request_id: RequestId | None, error: MCPError) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": JSONRPC, "error": error.to_error()}
    # An id that could not be read is omitted (the 2026 schema) rather than sent as null.
    if request_id is not None:
        message["id"] = request_id
    return message


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": JSONRPC, "method": method}
    if params is not None:
        message["params"] = params
    return message


def request(request_id: RequestId, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message = notification(method, params)
    message["id"] = request_id
    return message


def decode(body: bytes | str) -> Any:
    """Parse one message body; malformed or too deeply nested JSON is a PARSE_ERROR with status 400."""
    try:
        message = json.loads(body)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MCPError(PARSE_ERROR, f"Parse error: {exc}", http_status=400) from None
    # Nesting needs an opening bracket per level, so a body with few of them (all real
    # requests) skips the exact scan; the counts run at C speed.
    if len(body) > 2 * MAX_JSON_DEPTH and _openers(body) > MAX_JSON_DEPTH and _nesting_exceeds(body, MAX_JSON_DEPTH):
        raise _too_deep()
    return message


def _too_deep() -> MCPError:
    # -32700 rather than -32600: the parser refused the text, and past the interpreter's limit no
    # object (hence no id) exists at all, so every too-deep body gets the same answer without an id.
    return MCPError(PARSE_ERROR, f"Parse error: JSON nested deeper than {MAX_JSON_DEPTH} levels", http_status=400)


def _openers(body: bytes | str) -> int:
    if isinstance(body, str):
        return body.count("[") + body.count("{")
    return body.count(b"[") + body.count(b"{")


_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'[]{}"')
# Patterns compiled on first use (by `re`'s cache), not by `import mcp_asgi`: only bodies with
# many brackets are checked with them.
_QUOTED = rb'"[^"]*"'
_RUNS = rb"\[+|\]+"
_OPEN = ord("[")


def _nesting_exceeds(body: bytes | str, limit: int) -> bool:
    """Whether valid JSON `body` nests deeper than `limit`, in time linear in its size.

    Only for text `json.loads` accepted: its strings are then well formed, so once escaped
    backslashes and quotes are gone every quote left delimits a string. Each step but the
    last loop runs in C, and together they cost less than parsing the same body.
    """
    if isinstance(body, str):
        data = body.encode("utf-8", "surrogatepass")
    else:
        encoding = json.detect_encoding(body)
        data = body
        if not encoding.startswith("utf-8"):  # UTF-16/32, which json.loads also accepts
            data = body.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Keep brackets (one kind) and quotes; strings shrink to the brackets inside them, if any.
    data = data.translate(_BRACKETS, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in data:
        data = re.sub(_QUOTED, b"", data)
    # Removing every empty "[]" lowers the depth by exactly one; a few such passes shrink
    # wide documents (long lists of small objects) before the Python loop below.
    peeled = 0
    while peeled < limit:
        shorter = data.replace(b"[]", b"")
        if len(shorter) == len(data):
            break
        peeled += 1
        barely_shrank = len(shorter) * 4 > len(data) * 3
        data = shorter
        if barely_shrank:
            break
    depth = peeled
    for run in re.findall(_RUNS, data):
        if run[0] == _OPEN:
            depth += len(run)
            if depth > limit:
                return True
        else:
            depth -= len(run)
    return False


def encode(message: Any) -> bytes:
    """Serialize one outgoing message; never raises.

    pydantic-core's encoder is several times faster than `json.dumps` and also
    handles the values user code tends to return (datetimes, UUIDs, models).
    """
    try:
        return pydantic_core.to_json(message)
    except pydantic_core.PydanticSerializationError:
        pass
    try:
        return json.dumps(message, default=str, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # A lone surrogate (client text like "\ud800" echoed back) has no UTF-8 form;
        # escaped as \\ud800 it is still valid JSON and round-trips to the same string.
        pass
    except (RecursionError, ValueError, TypeError):
        return _unencodable(message)
    try:
        return json.dumps(message, default=str).encode()
    except (RecursionError, ValueError, TypeError):
        return _unencodable(message)


def _unencodable(message: Any) -> bytes:
    """The error sent in place of a reply that has no JSON form (a circular or absurdly deep value)."""
    logger.error("A reply could not be encoded as JSON (circular or too deeply nested); sent an error instead")
    error = MCPError(INTERNAL_ERROR, "Internal error: the reply could not be encoded as JSON")
    return pydantic_core.to_json(error_response(request_id_of(message), error))


# Message kinds, as classified from a decoded body.
REQUEST = "request"
NOTIFICATION = "notification"
RESPONSE = "response"


def classify(message: Any) -> str:
    """Say what a decoded message is, or raise INVALID_REQUEST (status 400)."""
    if not isinstance(message, dict):
        if isinstance(message, list):
            raise MCPError(INVALID_REQUEST, "Invalid Request: JSON-RPC batches are not supported", http_status=400)
        raise MCPError(INVALID_REQUEST, "Invalid Request: the body must be a JSON-RPC object", http_status=400)
    if message.get("jsonrpc") != JSONRPC:
        raise MCPError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', http_status=400)
    method = message.get("method")
    has_id = "id" in message
    if method is not None:
        if not isinstance(method, str):
            raise MCPError(INVALID_REQUEST, 'Invalid Request: "method" must be a string', http_status=400)
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            raise MCPError(INVALID_REQUEST, 'Invalid Request: "params" must be an object', http_status=400)
        if not has_id:
            return NOTIFICATION
        request_id = message["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
            raise MCPError(INVALID_REQUEST, 'Invalid Request: "id" must be a string or an integer', http_status=400)
        return REQUEST
    if has_id and ("result" in message or "error" in message):
        return RESPONSE
    raise MCPError(INVALID_REQUEST, 'Invalid Request: a message needs "method", or "result"/"error"', http_status=400)


def request_id_of(message: Any) -> RequestId | None:
    """The id of a message when it is readable, for error responses."""
    if isinstance(message, dict):
        request_id = message.get("id")
        if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
            return request_id
    return None
