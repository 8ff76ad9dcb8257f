"""What FastAPI parameter kinds a tool, resource or prompt may have, checked when it is registered."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Annotated

import pytest
from fastapi import BackgroundTasks, Body, Depends, Path, Response, WebSocket
from fastapi.security import SecurityScopes
from starlette.requests import HTTPConnection, Request

from mcp_asgi import MCPServer
from tests.fixtures.procs import ROOT


def test_import_and_plain_or_request_tools_never_import_fastapi():
    code = (
        "import sys\n"
        "from starlette.requests import Request\n"
        "from mcp_asgi import MCPServer\n"
        "mcp = MCPServer('plain')\n"
        "@mcp.tool\n"
        "def add(a: int, b: int = 2) -> int: return a + b\n"
        "@mcp.tool\n"
        "def where(request: Request) -> str: return request.url.path\n"
        "mcp.http_app()\n"
        "print(sorted(m for m in sys.modules if m == 'fastapi' or m.startswith('fastapi.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        (BackgroundTasks, "asks for a BackgroundTasks, which a tool cannot have: there is no HTTP response"),
        (Response, "asks for a Response, which a tool cannot have: a tool's result is its return value"),
        (WebSocket, "asks for a WebSocket, which a tool cannot have: an MCP call does not come over a WebSocket"),
        (SecurityScopes, "asks for SecurityScopes, which only a dependency can take"),
    ],
)
def test_parameter_kinds_no_mcp_call_can_fill_are_refused_naming_parameter_and_function(annotation, words):
    mcp = MCPServer("refusals")

    def report(extra: annotation, topic: str) -> str:  # type: ignore[valid-type]
        return topic

    with pytest.raises(TypeError) as caught:
        mcp.tool(report)
    message = str(caught.value)
    assert "Parameter 'extra' of " in message and "report()" in message
    assert words in message


def test_body_and_path_parameters_are_refused():
    mcp = MCPServer("refusals")

    def with_body(payload: Annotated[dict, Body()]) -> str:
        return ""

    def with_path(item: str = Path()) -> str:
        return ""

    for fn, marker in ((with_body, "Body()"), (with_path, "Path()")):
        with pytest.raises(TypeError) as caught:
            mcp.tool(fn)
        assert re.search(rf"Parameter '(payload|item)' of .*{fn.__name__}\(\) is FastAPI's {marker}", str(caught.value))


def test_a_dependency_asking_for_what_no_call_has_is_refused_naming_it():
    mcp = MCPServer("refusals")

    def audit(tasks: BackgroundTasks) -> None: ...

    def reads_body(payload: Annotated[dict, Body()]) -> None: ...

    def audited(done: Annotated[None, Depends(audit)]) -> str:
        return ""

    def parsed(data: Annotated[None, Depends(reads_body)]) -> str:
        return ""

    with pytest.raises(TypeError, match=r"Dependency audit of .*audited\(\) asks for a BackgroundTasks in 'tasks'"):
        mcp.tool(audited)
    with pytest.raises(TypeError, match=r"Dependency reads_body of .*parsed\(\) reads the request body \('payload'\)"):
        mcp.resource("data://parsed")(parsed)


def test_request_and_http_connection_parameters_are_kept_out_of_every_schema():
    mcp = MCPServer("kinds")

    @mcp.tool
    def tool(request: Request, connection: HTTPConnection, n: int = 1) -> int:
        return n

    @mcp.prompt
    def prompt(topic: str, request: Request | None = None) -> str:
        return topic

    assert mcp._registry.get("tools", "tool").definition["inputSchema"]["properties"].keys() == {"n"}
    assert mcp._registry.get("prompts", "prompt").definition["arguments"] == [{"name": "topic", "required": True}]


def test_parameterized_generic_parameters_are_plain_arguments() -> None:
    # On Python 3.10 inspect.isclass(dict[str, Any]) is True and issubclass() then raised TypeError.
    from typing import Any

    from mcp_asgi import MCPServer

    mcp = MCPServer("generics")

    @mcp.tool
    def tally(counts: dict[str, Any], names: list[int], pair: tuple[int, str]) -> int:
        return len(counts) + len(names) + len(pair)

    schema = mcp._tools["tally"].input_schema
    assert sorted(schema["properties"]) == ["counts", "names", "pair"]
