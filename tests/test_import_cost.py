"""`import mcp_asgi` stays light: pydantic models and optional libraries are loaded when first needed."""

from __future__ import annotations

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


def test_prompt_message_is_there_when_asked_for() -> None:
    import mcp_asgi
    from mcp_asgi.components import prompts
    from mcp_asgi.components.prompt_message import PromptMessage

    assert mcp_asgi.PromptMessage is PromptMessage and prompts.PromptMessage is PromptMessage
    assert PromptMessage("hello").model_dump() == {"role": "user", "content": "hello"}
    with pytest.raises(AttributeError):
        _ = prompts.NoSuchName  # type: ignore[attr-defined]
