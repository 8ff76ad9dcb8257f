"""`import mcp_asgi` stays light: pydantic models and optional libraries are loaded when first needed."""

from __future__ import annotations

import ast
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
    "starlette.middleware.cors",  # loaded by the CORS helpers
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
