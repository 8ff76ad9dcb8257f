"""OpenTelemetry: one SERVER span per MCP request, named and described as the MCP semantic conventions say.

`MCPServer` installs `Telemetry()` as its outermost MCP middleware when opentelemetry-api
can be imported (`MCPServer(telemetry=False)` turns it off, `telemetry=True` insists on
it). Only this module imports opentelemetry, and only the server imports this module,
so without the package nothing is imported and no request pays for it. Until an SDK
tracer provider is installed, a request costs one check.

The span (conventions: https://opentelemetry.io/docs/specs/semconv/gen-ai/mcp/):
- name `"{mcp.method.name} {target}"`, the target being the tool or prompt name (never
  a resource URI: too many distinct names), else `"{mcp.method.name}"`;
- `mcp.method.name`, `mcp.protocol.version`, `jsonrpc.request.id`, `mcp.session.id` (a
  SHA-256 digest of it: the id itself lets anyone who sees it speak in the session),
  `gen_ai.tool.name` + `gen_ai.operation.name=execute_tool`, `gen_ai.prompt.name`,
  `mcp.resource.uri`, `network.transport` (`tcp` or `pipe` for stdio),
  `network.protocol.name`/`.version`, `client.address`/`client.port`;
- on a JSON-RPC error `error.type` and `rpc.response.status_code` (its code) and status
  ERROR with its message; on a tool's error result `error.type=tool_error` and status ERROR.

Its parent is the trace context in the request's `params._meta` (`traceparent`,
`tracestate`, `baggage`; 2026-07-28 reserves these keys), linking the ambient span (an
HTTP server span, say) when there is one; without it, the ambient span; without either,
the W3C headers of the HTTP request.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ModuleNotFoundError as exc:  # keep the name: MCPServer tells "absent" from "broken" by it
    raise ModuleNotFoundError(
        "mcp_asgi.telemetry needs opentelemetry-api: pip install 'mcp-asgi[otel]'", name=exc.name
    ) from exc

from mcp_asgi.protocol.jsonrpc import MCPError

if TYPE_CHECKING:
    from mcp_asgi.middleware import CallNext, MCPRequest

__all__ = ["Telemetry"]

_TRACE_KEYS = ("traceparent", "tracestate", "baggage")
_UNKNOWN = object()


class Telemetry:
    """The MCP middleware that records a span per request; add it yourself to choose its place or provider.

    ```python
    mcp = MCPServer("Demo", telemetry=False, middleware=[Auditor(), Telemetry(tracer_provider=provider)])
    ```
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        from mcp_asgi import __version__

        self._tracer = trace.get_tracer("mcp_asgi", __version__, tracer_provider=tracer_provider)
        # Until a global provider is installed (which may happen after the server is built) every
        # span would be dropped: skip the work. Once installed, it stays: no more checks.
        if tracer_provider is None:
            trace.get_tracer_provider()  # loads one named by OTEL_PYTHON_TRACER_PROVIDER, if any
        self._waiting = tracer_provider is None and _no_global_provider()

    async def on_request(self, request: MCPRequest, call_next: CallNext) -> dict[str, Any]:
        if self._waiting:
            if _no_global_provider():
                return await call_next(request)
            self._waiting = False
        parent, links = _parent(request)
        span = self._tracer.start_span(
            _span_name(request), context=parent, kind=SpanKind.SERVER, attributes=_attributes(request), links=links
        )
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            try:
                result = await call_next(request)
            except MCPError as error:
                code = str(error.code)
                span.set_attribute("error.type", code)
                span.set_attribute("rpc.response.status_code", code)
                span.set_status(Status(StatusCode.ERROR, error.message))
                raise
            except Exception:
                # InputRequired (2026-07-28 asks the client for input): an answer, not a failure.
                raise
            except BaseException as exc:  # cancelled (by the client, a disconnect, shutdown)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR))
                raise
            if request.method == "tools/call" and result.get("isError") is True:
                span.set_attribute("error.type", "tool_error")
                span.set_status(Status(StatusCode.ERROR))
            return result


def _no_global_provider() -> bool:
    """Whether no global tracer provider is set (spans would go nowhere).

    `get_tracer_provider()` says so too, but looks up an environment variable in `os.environ` on
    every call (two KeyErrors, about 1.5 us); the module global it reads is checked directly,
    falling back to the public call should an API version not have it. The first public call
    (from `Telemetry()`) loads a provider named by OTEL_PYTHON_TRACER_PROVIDER into that global.
    """
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is _UNKNOWN:
        return isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return provider is None


def _span_name(request: MCPRequest) -> str:
    method = request.method
    if method in ("tools/call", "prompts/get"):
        name = request.name
        if name is not None:
            return f"{method} {name}"
    return method


def _attributes(request: MCPRequest) -> dict[str, Any]:
    method = request.method
    attributes: dict[str, Any] = {"mcp.method.name": method, "mcp.protocol.version": request.protocol_version}
    if request.request_id is not None:
        attributes["jsonrpc.request.id"] = str(request.request_id)
    name = request.name
    if name is not None:
        if method == "tools/call":
            attributes["gen_ai.tool.name"] = name
            attributes["gen_ai.operation.name"] = "execute_tool"
        elif method == "prompts/get":
            attributes["gen_ai.prompt.name"] = name
        else:
            attributes["mcp.resource.uri"] = name
    session_id = request.session_id
    if session_id is not None:
        attributes["mcp.session.id"] = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    http = request.request
    if http is None:
        attributes["network.transport"] = "pipe"
        return attributes
    scope = http.scope
    attributes["network.transport"] = "tcp"
    attributes["network.protocol.name"] = "http"
    if "http_version" in scope:
        attributes["network.protocol.version"] = scope["http_version"]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
        attributes["client.port"] = client[1]
    return attributes


def _parent(request: MCPRequest) -> tuple[Any, list[Link] | None]:
    """The context to start the span in, and the links to add to it."""
    meta = request.meta
    if "traceparent" in meta:
        carrier = {key: meta[key] for key in _TRACE_KEYS if isinstance(meta.get(key), str)}
        ambient = trace.get_current_span().get_span_context()
        return propagate.extract(carrier), [Link(ambient)] if ambient.is_valid else None
    if trace.get_current_span().get_span_context().is_valid:
        return None, None
    http = request.request
    if http is not None and "traceparent" in http.headers:
        return propagate.extract(http.headers), None
    return None, None
