"""`import mcp_asgi` stays light: pydantic models and optional libraries are loaded when first needed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

HEAVY = [
    "pydantic.main",  # pydantic's model machinery: tools build their models when registered
    "importlib.metadata",  # pydantic's plugin scan, on the first model built
    "anyio._backends._asyncio",  # imported by anyio once a loop runs
    "fastapi",
    "redis",
]


def test_importing_mcp_asgi_builds_no_pydantic_model() -> None:
    code = f"import sys, mcp_asgi; print([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# Modules only some features use, each loaded where that feature starts: `import mcp_asgi` must not
# load them, so that a plain `MCPServer` + `http_app()` user does not pay for them at import.
FEATURE_MODULES = [
    "mcp_asgi.tasks.store",  # the tasks extension: built with the backend, installed by the server
    "mcp_asgi.tasks.methods",
    "mcp_asgi.auth.challenge",  # auth: loaded on an auth error, or by the auth layer itself
    "mcp_asgi.auth.resource",  # loaded by a mount that serves auth metadata
    "mcp_asgi.auth.bearer",
    "mcp_asgi.telemetry",
    "mcp_asgi.redis",
    "mcp_asgi.django",
    "mcp_asgi.litestar",
    "mcp_asgi.quart",
    "mcp_asgi.cli",
    "mcp_asgi.transports.stdio",
    "mcp_asgi.protocol.answers",  # what ctx.elicit / ctx.sample return: loaded with a client's first answer
    "mcp_asgi.http_app",  # the HTTP transports: loaded by `MCPServer.http_app()`
    "mcp_asgi.transports.streamable_http",
    "mcp_asgi.transports.session_http",
    "mcp_asgi.asgi.security",
    "starlette.middleware.cors",  # loaded by the CORS helpers
    "pathlib",  # loaded by media built from a path (Image(path=...), FileContent)
    # anyio loads these on first use; type hints of ours must not load them at import.
    "anyio.streams.memory",
    "anyio._core._synchronization",
]


DEPENDENCIES = "import starlette.applications, starlette.responses, pydantic, anyio"


def _loaded_after(code: str, modules: list[str]) -> list[str]:
    probe = f"import sys; {code}; print([m for m in {modules!r} if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return ast.literal_eval(output.strip())


def test_importing_mcp_asgi_leaves_feature_modules_unloaded() -> None:
    # A module our dependencies load by themselves is not ours to avoid (a newer anyio might).
    by_dependencies = _loaded_after(DEPENDENCIES, FEATURE_MODULES)
    assert _loaded_after("import mcp_asgi", FEATURE_MODULES) == by_dependencies


HTTP_MODULES = ["mcp_asgi.http_app", "mcp_asgi.transports.streamable_http", "mcp_asgi.transports.modern_http"]
DEFINE = "import mcp_asgi; mcp = mcp_asgi.MCPServer('demo'); mcp.tool(name='echo')(lambda text: text)"


def test_defining_a_server_leaves_the_http_transports_unloaded() -> None:
    # A server defined (or served over stdio) needs no HTTP transport; `http_app()` loads them.
    assert _loaded_after(DEFINE, HTTP_MODULES) == []
    assert _loaded_after(f"{DEFINE}; mcp.http_app()", HTTP_MODULES) == HTTP_MODULES


def test_every_public_name_imports_from_the_package() -> None:
    import mcp_asgi

    code = f"from mcp_asgi import {', '.join(mcp_asgi.__all__)}"
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


def test_prompt_message_is_there_when_asked_for() -> None:
    import mcp_asgi
    from mcp_asgi.components import prompts
    from mcp_asgi.components.prompt_message import PromptMessage

    assert mcp_asgi.PromptMessage is PromptMessage and prompts.PromptMessage is PromptMessage
    assert PromptMessage("hello").model_dump() == {"role": "user", "content": "hello"}
    with pytest.raises(AttributeError):
        _ = prompts.NoSuchName  # type: ignore[attr-defined]


# Creating a dataclass exec()s the generated source of its methods: ten of them were a quarter of
# our share of `import mcp_asgi`. The ones left are public classes users may treat as dataclasses
# (`dataclasses.replace`, `asdict`); an internal record is a plain class with `__slots__`.
PUBLIC_DATACLASSES = {
    "mcp_asgi.components.content.File",
    "mcp_asgi.components.tools.ToolResult",
    "mcp_asgi.transports.sessions.SessionRecord",
}


def _dataclasses_after(code: str) -> set[str]:
    probe = (
        f"import dataclasses, sys; {code}; "
        "print(sorted({f'{c.__module__}.{c.__qualname__}' for n, m in list(sys.modules.items()) "
        "if n.startswith('mcp_asgi') for c in vars(m).values() "
        "if isinstance(c, type) and c.__module__ == n and dataclasses.is_dataclass(c)}))"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(ast.literal_eval(output.strip()))


@pytest.mark.parametrize("code", ["import mcp_asgi", "import mcp_asgi.fastapi"])
def test_importing_creates_only_the_public_dataclasses(code: str) -> None:
    assert _dataclasses_after(code) == PUBLIC_DATACLASSES


def test_the_probe_sees_a_dataclass_it_loads() -> None:
    # The probe above must not pass by missing dataclasses: loading the answers module shows two more.
    found = _dataclasses_after("import mcp_asgi.protocol.answers")
    assert found - PUBLIC_DATACLASSES == {
        "mcp_asgi.protocol.answers.ElicitationResult",
        "mcp_asgi.protocol.answers.SamplingResult",
    }


def test_lazy_answers_are_the_dataclasses_ctx_returns() -> None:
    import dataclasses

    import mcp_asgi
    from mcp_asgi.protocol.mrtr import Elicit, Sample

    accepted = Elicit("name?").parse({"action": "accept", "content": {"name": "Ada"}})
    assert type(accepted) is mcp_asgi.ElicitationResult and accepted.accepted
    assert dataclasses.replace(accepted, action="decline") == mcp_asgi.ElicitationResult("decline", {"name": "Ada"})
    sampled = Sample("hi").parse({"role": "assistant", "content": {"type": "text", "text": "hello"}})
    assert type(sampled) is mcp_asgi.SamplingResult and sampled.text == "hello"


def test_media_paths_work_without_pathlib_at_import() -> None:
    import pathlib
    import typing

    import pydantic

    from mcp_asgi import FileContent, Image

    assert isinstance(Image(path="chart.png").path, pathlib.Path)
    # The dataclass's hints resolve at runtime: pydantic builds a schema for a result holding one.
    assert typing.get_type_hints(FileContent)["path"] == str | os.PathLike[str] | None
    schema = pydantic.TypeAdapter(dict[str, FileContent]).json_schema()
    assert {"format": "path", "type": "string"} in schema["$defs"]["File"]["properties"]["path"]["anyOf"]


# Compiling a regular expression costs about what creating a small dataclass does; patterns only
# some requests or definitions use are compiled on first use (by `re`'s cache) instead.
HOT_PATTERNS = {"mcp_asgi.protocol.param_headers": 2}  # header values, checked on each request


def test_importing_mcp_asgi_compiles_only_hot_path_patterns() -> None:
    probe = (
        f"{DEPENDENCIES}; import collections, re, sys; compiled = collections.Counter(); compile = re.compile\n"
        "def counting(pattern, flags=0):\n"
        "    compiled[sys._getframe(1).f_globals.get('__name__')] += 1\n"
        "    return compile(pattern, flags)\n"
        "re.compile = counting; import mcp_asgi; re.compile = compile\n"
        "print({name: n for name, n in compiled.items() if name.startswith('mcp_asgi')})"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(output.strip()) == HOT_PATTERNS


def test_tool_options_hints_are_not_compiled_at_import() -> None:
    # A TypedDict class in a module with string annotations compiles each into a ForwardRef
    # (about 3% of our import); the call syntax gives it the types themselves.
    import typing

    from mcp_asgi.components.tools import ToolOptions

    assert typing.is_typeddict(ToolOptions) and not ToolOptions.__total__
    assert not [hint for hint in ToolOptions.__annotations__.values() if isinstance(hint, typing.ForwardRef)]
    assert typing.get_type_hints(ToolOptions)["run_in_thread"] is bool
