"""OpenTelemetry: one SERVER span per MCP request, its attributes, its parent, its status; nothing without the API."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi import MCPServer, ToolError
from mcp_asgi.telemetry import Telemetry
from tests.conftest import serve
from tests.fixtures.procs import ROOT
from tests.http_helpers import ACCEPT, client_for, initialize, modern_request

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def build(provider: TracerProvider, **options: Any) -> MCPServer:
    mcp = MCPServer("traced", telemetry=False, middleware=[Telemetry(tracer_provider=provider)], **options)
    tracer = provider.get_tracer("tests")

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        # A span the tool makes itself (in its worker thread) is a child of the request's span.
        with tracer.start_as_current_span("inside add"):
            return a + b

    @mcp.tool
    def fail() -> str:
        raise ToolError("no luck")

    @mcp.resource("data://config")
    def config() -> str:
        return "cfg"

    @mcp.prompt
    def greet(name: str) -> str:
        return f"Hello, {name}"

    return mcp


def only(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = [span for span in spans if span.name == name]
    assert len(matching) == 1, [span.name for span in spans]
    return matching[0]


async def post(client: httpx.AsyncClient, method: str, params: dict[str, Any], **headers: str) -> dict[str, Any]:
    body, modern_headers = modern_request(method, params)
    response = await client.post("/mcp", json=body, headers={**modern_headers, **headers})
    return response.json()


async def test_a_tool_call_is_one_server_span_with_the_conventional_name_and_attributes(provider, exporter):
    with serve(build(provider).http_app()) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            reply = await post(client, "tools/call", {"name": "add", "arguments": {"a": 1, "b": 2}})
    assert reply["result"]["structuredContent"] == {"result": 3}
    spans = exporter.get_finished_spans()
    span = only(spans, "tools/call add")
    assert span.kind is SpanKind.SERVER
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    client_port = attributes.pop("client.port")
    assert isinstance(client_port, int) and client_port > 0
    assert attributes == {
        "mcp.method.name": "tools/call",
        "mcp.protocol.version": "2026-07-28",
        "jsonrpc.request.id": "1",
        "gen_ai.tool.name": "add",
        "gen_ai.operation.name": "execute_tool",
        "network.transport": "tcp",
        "network.protocol.name": "http",
        "network.protocol.version": "1.1",
        "client.address": "127.0.0.1",
    }
    # No caller context: a new trace, which the tool's own span joins.
    assert span.parent is None
    inner = only(spans, "inside add")
    assert inner.parent is not None and inner.parent.span_id == span.context.span_id


async def test_session_resource_and_prompt_spans_on_a_2025_session(provider, exporter):
    app = build(provider).http_app()
    async with client_for(app) as client:
        session_id = await initialize(client)
        headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
        for request_id, method, params in [
            ("r-1", "resources/read", {"uri": "data://config"}),
            ("r-2", "prompts/get", {"name": "greet", "arguments": {"name": "Ann"}}),
        ]:
            message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
            assert (await client.post("/mcp", json=message, headers=headers)).status_code == 200
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["initialize", "resources/read", "prompts/get greet"]
    hashed = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    read, prompt = dict(spans[1].attributes or {}), dict(spans[2].attributes or {})
    assert read["mcp.resource.uri"] == "data://config"
    assert read["jsonrpc.request.id"] == "r-1"
    assert read["mcp.session.id"] == prompt["mcp.session.id"] == hashed != session_id
    assert read["mcp.protocol.version"] == "2025-11-25"
    assert prompt["gen_ai.prompt.name"] == "greet" and "gen_ai.tool.name" not in prompt


async def test_the_parent_is_the_traceparent_header_of_the_http_request(provider, exporter):
    with serve(build(provider).http_app()) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            await post(client, "tools/list", {}, traceparent=TRACEPARENT, tracestate="vendor=1")
    span = only(exporter.get_finished_spans(), "tools/list")
    assert f"{span.context.trace_id:032x}" == CALLER_TRACE
    assert span.parent is not None and span.parent.is_remote
    assert f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert span.context.trace_state.get("vendor") == "1"


async def test_the_parent_from_meta_wins_over_the_http_header(provider, exporter):
    meta_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    meta_parent = f"00-{meta_trace}-{CALLER_SPAN}-01"
    params = {"name": "add", "arguments": {"a": 1, "b": 1}, "_meta": {"traceparent": meta_parent}}
    async with client_for(build(provider).http_app()) as client:
        await post(client, "tools/call", params, traceparent=TRACEPARENT)
    span = only(exporter.get_finished_spans(), "tools/call add")
    assert f"{span.context.trace_id:032x}" == meta_trace
    assert f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert span.links == ()


class AmbientSpan:
    """Stands in for HTTP server instrumentation: a span around the whole HTTP request."""

    def __init__(self, app: ASGIApp, tracer: Any) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.tracer.start_as_current_span("HTTP POST"):
            await self.app(scope, receive, send)


async def test_an_ambient_http_span_is_the_parent_or_with_meta_context_a_link(provider, exporter):
    tracer = provider.get_tracer("http")
    app = build(provider).http_app(middleware=[Middleware(AmbientSpan, tracer=tracer)])
    async with client_for(app) as client:
        await post(client, "tools/list", {})
        await post(client, "prompts/list", {"_meta": {"traceparent": TRACEPARENT}})
    spans = exporter.get_finished_spans()
    http_spans = [span for span in spans if span.name == "HTTP POST"]
    listed, prompts = only(spans, "tools/list"), only(spans, "prompts/list")
    assert listed.parent.span_id == http_spans[0].context.span_id
    assert f"{prompts.parent.span_id:016x}" == CALLER_SPAN
    assert [link.context.span_id for link in prompts.links] == [http_spans[1].context.span_id]


async def test_errors_set_error_type_and_status(provider, exporter):
    async with client_for(build(provider).http_app()) as client:
        unknown = await post(client, "tools/call", {"name": "nope", "arguments": {}})
        failed = await post(client, "tools/call", {"name": "fail", "arguments": {}})
        missing = await post(client, "resources/read", {"uri": "data://missing"})
    assert unknown["error"]["code"] == -32602
    assert failed["result"]["isError"] is True
    assert "error" in missing
    spans = exporter.get_finished_spans()
    nope, fail, read = only(spans, "tools/call nope"), only(spans, "tools/call fail"), only(spans, "resources/read")
    assert nope.attributes["error.type"] == nope.attributes["rpc.response.status_code"] == "-32602"
    assert nope.status.status_code is StatusCode.ERROR and nope.status.description == "Unknown tool: nope"
    assert fail.attributes["error.type"] == "tool_error" and fail.status.status_code is StatusCode.ERROR
    code = str(missing["error"]["code"])
    assert read.attributes["error.type"] == code and read.status.status_code is StatusCode.ERROR


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_by_default_the_global_tracer_provider_gets_a_span_per_request():
    done = run_python(
        """
        import asyncio, json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from mcp_asgi import MCPServer
        from tests.http_helpers import client_for, modern_request

        on, off = MCPServer("on"), MCPServer("off", telemetry=False)
        # Installed after the servers were built, as an app's startup code may do.
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)

        async def main():
            for mcp in (on, off):
                async with client_for(mcp.http_app()) as client:
                    body, headers = modern_request("tools/list")
                    assert (await client.post("/mcp", json=body, headers=headers)).status_code == 200
        asyncio.run(main())
        print(json.dumps([type(m).__name__ for m in on.middleware] + [s.name for s in exporter.get_finished_spans()]))
        """
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["Telemetry", "tools/list"]


def test_import_mcp_asgi_never_imports_opentelemetry():
    done = run_python(
        """
        import sys
        import mcp_asgi
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_opentelemetry_nothing_is_imported_and_requests_are_answered():
    done = run_python(
        """
        import asyncio, sys

        class NoOpenTelemetry:
            # As if opentelemetry-api were not installed.
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, NoOpenTelemetry())
        from mcp_asgi import MCPServer
        from tests.http_helpers import client_for, modern_request

        mcp = MCPServer("plain")
        assert mcp.middleware == () and mcp._core._handlers is mcp._core._base_handlers
        try:
            MCPServer("insists", telemetry=True)
        except ModuleNotFoundError as exc:
            print(exc)

        async def main():
            async with client_for(mcp.http_app()) as client:
                body, headers = modern_request("tools/list")
                print((await client.post("/mcp", json=body, headers=headers)).status_code)
        asyncio.run(main())
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "MCPServer(telemetry=True) needs opentelemetry-api: pip install 'mcp-asgi[otel]'",
        "200",
        "[]",
    ]


def test_telemetry_is_the_outermost_middleware_of_a_default_server():
    class Audit:
        async def on_request(self, request: Any, call_next: Any) -> dict[str, Any]:
            return await call_next(request)

    audit = Audit()
    mcp = MCPServer("default", middleware=[audit])
    assert [type(layer) for layer in mcp.middleware] == [Telemetry, Audit]
    assert MCPServer("off", telemetry=False, middleware=[audit]).middleware == (audit,)


async def test_malformed_trace_context_starts_a_new_trace_and_the_request_is_answered(provider, exporter):
    async with client_for(build(provider).http_app()) as client:
        from_meta = await post(client, "tools/list", {"_meta": {"traceparent": 5, "tracestate": ["x"]}})
        from_header = await post(client, "prompts/list", {}, traceparent="00-not-a-trace-01")
    assert "result" in from_meta and "result" in from_header
    spans = exporter.get_finished_spans()
    assert [(span.name, span.parent) for span in spans] == [("tools/list", None), ("prompts/list", None)]
