"""Calling a FastAPI route in-process for a tool call, and turning its answer into a tool result.

The request goes through the whole ASGI app (its middleware, dependencies and validation run,
exactly as for a client over HTTP) without a socket. Its body is read whole, up to a bound: a
tool result lands in a model's context, so an answer past `max_response_bytes` is refused
rather than buffered without end, and an endless stream ends at that bound too.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode

import anyio
from starlette.types import ASGIApp, Message

from mcp_asgi.components.tools import ToolResult
from mcp_asgi.dependencies import HTTP_STATUS_META
from mcp_asgi.fastapi.schemas import RouteShape

__all__ = ["RouteCall", "STATUS_META_KEY"]

logger = logging.getLogger("mcp_asgi")

# Where an error result carries the route's HTTP status: the key an HTTPException raised in a tool uses too.
STATUS_META_KEY = HTTP_STATUS_META
# An error page is for a model to read: this much of a non-JSON one is plenty.
ERROR_TEXT_LIMIT = 2000
_PATH_PARAM = re.compile(r"\{([^{}:]+)\}")
_TEXT_TYPES = ("application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/yaml")


class _TooLarge(Exception):
    pass


# Plain classes, not dataclasses: creating a dataclass exec()s the source of its methods, a cost
# `import mcp_asgi.fastapi` would pay for records nothing compares or prints.
class _Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None


class RouteCall:
    """Everything needed to call one route for a tool: built once by `add_routes`."""

    def __init__(
        self,
        *,
        app: ASGIApp,
        tool_name: str,
        method: str,
        path_format: str,
        shape: RouteShape,
        slash_params: frozenset[str],
        forward_headers: frozenset[str],
        wrap_result: bool,
        has_output_schema: bool,
        max_response_bytes: int,
        route: Any,
    ) -> None:
        self.app = app
        self.tool_name = tool_name
        self.method = method
        self.path_format = path_format
        self.shape = shape
        # Path parameters declared `{name:path}`: their value may hold slashes.
        self.slash_params = slash_params
        self.forward_headers = forward_headers
        self.wrap_result = wrap_result
        self.has_output_schema = has_output_schema
        self.max_response_bytes = max_response_bytes
        # The route object, to check the built path reaches it and nothing else.
        self.route = route

    async def __call__(self, arguments: dict[str, Any], context: Any) -> ToolResult:
        try:
            scope, body = self._request(arguments, context)
        except ValueError as exc:
            return _error(str(exc))
        answer = _Answer()
        try:
            await self._run(scope, body, answer)
        except _TooLarge:
            return _error(
                f"The answer of {self.method} {scope['path']} is larger than {self.max_response_bytes} bytes, "
                "the limit for a tool result (add_routes(max_response_bytes=...))"
            )
        except Exception:
            # Raised past the app's own error handling (Starlette re-raises after answering 500).
            logger.exception("Route %s %s raised while called as tool %r", self.method, scope["path"], self.tool_name)
            if not answer.status:
                return _error(f"Error calling tool '{self.tool_name}': the route failed", status=500)
        return self._result(answer, scope)

    # The request.
    def _request(self, arguments: dict[str, Any], context: Any) -> tuple[dict[str, Any], bytes]:
        shape = self.shape
        given = dict(arguments)
        path_values: dict[str, tuple[str, str]] = {}
        query: list[tuple[str, str]] = []
        headers: list[tuple[bytes, bytes]] = []
        cookies: list[str] = []
        for param in shape.parameters:
            value = given.pop(param.argument, None)
            if value is None:
                if param.location == "path":
                    raise ValueError(f"Invalid arguments for tool '{self.tool_name}': {param.argument}: missing")
                continue
            values = value if isinstance(value, list) and param.location != "path" else [value]
            texts = [_text(v) for v in values]
            if param.location == "path":
                safe = "/" if param.name in self.slash_params else ""
                path_values[param.name] = (texts[0], quote(texts[0], safe=safe))
            elif param.location == "query":
                query.extend((param.name, text) for text in texts)
            elif param.location == "header":
                headers.extend((param.name.lower().encode("latin-1"), _header_value(text)) for text in texts)
            else:
                cookies.append(f"{param.name}={_cookie_value(texts[0])}")
        body = b""
        if shape.body_encoding is not None:
            content = given.get(shape.body_argument) if shape.body_argument else given
            if content is not None or shape.body_argument is None:
                body, media_type = _encode_body(content, shape.body_encoding)
                headers.append((b"content-type", media_type))
        request = getattr(context, "request", None) if context is not None else None
        headers.extend(self._forwarded(request))
        if cookies:
            headers.append((b"cookie", "; ".join(cookies).encode("latin-1")))
        host = request.headers.get("host", "localhost") if request is not None else "localhost"
        headers += [(b"host", host.encode("latin-1")), (b"accept", b"application/json, */*")]
        headers.append((b"content-length", str(len(body)).encode()))
        # One pass over the template, so a value that looks like `{other}` stays a value.
        path = _PATH_PARAM.sub(lambda m: path_values.get(m.group(1), ("", ""))[0], self.path_format)
        raw_path = _PATH_PARAM.sub(lambda m: path_values.get(m.group(1), ("", ""))[1], self.path_format)
        scope = self._scope(path, raw_path, urlencode(query).encode("ascii"), headers, request, context)
        self._check_target(scope)
        return scope, body

    def _forwarded(self, request: Any) -> list[tuple[bytes, bytes]]:
        if request is None or not self.forward_headers:
            return []
        headers = request.scope.get("headers", ())
        return [(k, v) for k, v in headers if k.decode("latin-1").lower() in self.forward_headers]

    def _scope(
        self, path: str, raw_path: str, query: bytes, headers: list[tuple[bytes, bytes]], request: Any, context: Any
    ) -> dict[str, Any]:
        outer = request.scope if request is not None else {}
        # The route sees the lifespan state of the server that received the MCP request: the
        # host's, when the MCP app is mounted in it; over stdio, the MCP server's own.
        state = outer.get("state")
        if state is None:
            state = getattr(context, "lifespan_context", None) or {}
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": outer.get("scheme", "http"),
            "path": path,
            "raw_path": raw_path.encode("utf-8"),
            "root_path": "",
            "query_string": query,
            "headers": headers,
            "client": outer.get("client"),
            "server": outer.get("server"),
            "state": dict(state),
            "extensions": {},
            # Lets the app's middleware tell a tool call from a client's request.
            "mcp_asgi.tool": self.tool_name,
        }

    def _check_target(self, scope: dict[str, Any]) -> None:
        # Argument values must not steer the request to another endpoint (the MCP mount, say):
        # the first route that fully matches must be this tool's own.
        from starlette.routing import Match

        for route in getattr(getattr(self.app, "router", None), "routes", ()):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                if route is self.route:
                    return
                break
        raise ValueError(
            f"Invalid arguments for tool '{self.tool_name}': the path {scope['path']!r} does not reach "
            f"{self.method} {self.path_format}"
        )

    # The call.
    async def _run(self, scope: dict[str, Any], body: bytes, answer: _Answer) -> None:
        done = anyio.Event()
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            # Only a disconnect is left; it comes once the answer is complete.
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", ()))
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")
                if len(answer.body) > self.max_response_bytes:
                    raise _TooLarge
                if not message.get("more_body", False):
                    done.set()

        try:
            await self.app(scope, receive, send)
        finally:
            done.set()

    # The result.
    def _result(self, answer: _Answer, scope: dict[str, Any]) -> ToolResult:
        result = self._success_or_error(answer, scope)
        if self.has_output_schema and not result.is_error and result.structured_content is None:
            # The tool promised structured content (its response model) and the route sent none:
            # an error result, which clients do not check against the output schema.
            what = answer.header(b"content-type") or "no content"
            head = f"{self.method} {self.path_format} answered {answer.status} with {what}, not its response model"
            text = result.content[0].get("text") if result.content and isinstance(result.content[0], dict) else None
            return _error(f"{head}: {text}" if text else head, status=answer.status)
        return result

    def _success_or_error(self, answer: _Answer, scope: dict[str, Any]) -> ToolResult:
        media_type, _, params = (answer.header(b"content-type") or "").partition(";")
        media_type = media_type.strip().lower()
        charset = _charset(params)
        if not 200 <= answer.status < 300:
            return _error(self._error_text(answer, media_type, charset), status=answer.status)
        if not answer.body:
            return ToolResult(content=[{"type": "text", "text": f"{answer.status} {_phrase(answer.status)}"}])
        if media_type == "application/json" or media_type.endswith("+json"):
            text = answer.body.decode(charset, errors="replace")
            try:
                data = json.loads(text)
            except ValueError:
                return ToolResult(content=[{"type": "text", "text": text}])
            structured = None
            if self.wrap_result:
                structured = {"result": data}
            elif isinstance(data, dict):
                structured = data
            return ToolResult(content=[{"type": "text", "text": text}], structured_content=structured)
        if media_type.startswith("text/") or media_type in _TEXT_TYPES or not media_type:
            return ToolResult(content=[{"type": "text", "text": answer.body.decode(charset, errors="replace")}])
        return ToolResult(content=[self._binary(answer, media_type, scope)])

    def _binary(self, answer: _Answer, media_type: str, scope: dict[str, Any]) -> dict[str, Any]:
        data = base64.b64encode(bytes(answer.body)).decode("ascii")
        kind = media_type.split("/", 1)[0]
        if kind in ("image", "audio"):
            return {"type": kind, "data": data, "mimeType": media_type}
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "localhost")
        query = f"?{scope['query_string'].decode('ascii')}" if scope["query_string"] else ""
        uri = f"{scope['scheme']}://{host}{scope['raw_path'].decode('utf-8')}{query}"
        return {"type": "resource", "resource": {"uri": uri, "mimeType": media_type, "blob": data}}

    def _error_text(self, answer: _Answer, media_type: str, charset: str) -> str:
        head = f"{self.method} {self.path_format} answered {answer.status} {_phrase(answer.status)}"
        location = answer.header(b"location")
        if location and 300 <= answer.status < 400:
            head += f" (to {location})"
        text = answer.body.decode(charset, errors="replace")
        if media_type == "application/json" or media_type.endswith("+json"):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict) and "detail" in data:
                detail = data["detail"]
                return f"{head}: {detail if isinstance(detail, str) else json.dumps(detail)}"
            return f"{head}: {text}" if text else head
        if len(text) > ERROR_TEXT_LIMIT:
            text = text[:ERROR_TEXT_LIMIT] + "..."
        return f"{head}: {text}" if text.strip() else head


def _error(text: str, *, status: int | None = None) -> ToolResult:
    meta = {STATUS_META_KEY: status} if status is not None else None
    return ToolResult(content=[{"type": "text", "text": text}], is_error=True, meta=meta)


def _text(value: Any) -> str:
    """A JSON argument as FastAPI parses it from a path, query, header or cookie."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def _header_value(text: str) -> bytes:
    if any(c in text for c in "\r\n\0"):
        raise ValueError("Invalid arguments: a header value cannot contain line breaks")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("Invalid arguments: a header value must be Latin-1 text") from None


def _cookie_value(text: str) -> str:
    if any(c in text for c in ';,"\\\r\n\0') or not text.isprintable():
        raise ValueError('Invalid arguments: a cookie value cannot contain ; , " \\ or control characters')
    return text


def _encode_body(content: Any, encoding: str) -> tuple[bytes, bytes]:
    if encoding == "json":
        return json.dumps(content, separators=(",", ":")).encode(), b"application/json"
    if not isinstance(content, dict):
        raise ValueError("Invalid arguments: a form body must be an object")
    pairs = [(k, _text(x)) for k, v in content.items() if v is not None for x in (v if isinstance(v, list) else [v])]
    return urlencode(pairs).encode("ascii"), b"application/x-www-form-urlencoded"


def _charset(params: str) -> str:
    for part in params.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
            try:
                "".encode(charset)
            except LookupError:
                break
            return charset
    return "utf-8"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
