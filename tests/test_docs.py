"""Every ```python block in the docs runs, and a block that builds an `app` serves a real MCP client.

Conventions for doc authors:
- each block is a complete module (imports included); it runs alone, in a temp dir;
- a block that defines `app` is served with uvicorn and the official client lists (and calls,
  where they take no arguments) its tools at `MCP_PATH` (a variable the block may set; `/mcp`);
- `<!-- no-test -->` on the line before a block skips it (fragments, shell-like snippets).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from mcp import Client

from tests.conftest import serve

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN_FILES = [
    ROOT / "docs" / "integration.md",
    ROOT / "docs" / "hosts.md",
    ROOT / "docs" / "middleware.md",
    ROOT / "docs" / "tasks.md",
    ROOT / "README.md",
]
SKIP_MARKER = "<!-- no-test -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    path: Path
    line: int
    code: str

    @property
    def id(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        return f"{where}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a markdown file that are not marked `<!-- no-test -->`."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        if before and before[-1].strip() == SKIP_MARKER:
            continue
        blocks.append(Block(path, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


BLOCKS = [block for path in MARKDOWN_FILES if path.exists() for block in python_blocks(path)]


def run_as_module(block: Block, directory: Path) -> ModuleType:
    """Import the block as a module from a file in `directory`, as `uvicorn app:app` would."""
    name = "docs_block_" + re.sub(r"\W", "_", block.id)
    source = directory / f"{name}.py"
    source.write_text(block.code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs, so annotations, pydantic models and dataclasses can resolve.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def test_the_docs_have_blocks_to_test() -> None:
    assert any(block.path.name == "integration.md" for block in BLOCKS)


def test_skip_marker_and_line_numbers(tmp_path: Path) -> None:
    sample = tmp_path / "sample.md"
    sample.write_text(
        "# t\n\n<!-- no-test -->\n```python\nraise SystemExit\n```\n\n```python\nx = 1\n```\n", encoding="utf-8"
    )
    blocks = python_blocks(sample)
    assert [(block.line, block.code) for block in blocks] == [(8, "x = 1\n")]


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
async def test_doc_block_runs_and_serves_mcp(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = run_as_module(block, tmp_path)
    app = getattr(module, "app", None)
    if app is None:
        return
    mcp_path = getattr(module, "MCP_PATH", "/mcp")
    with serve(app) as base:
        for mode in ("legacy", "2026-07-28"):
            async with Client(f"{base}{mcp_path}", mode=mode) as client:
                tools = (await client.list_tools()).tools
                for tool in tools:
                    if tool.input_schema.get("required"):
                        continue
                    result = await client.call_tool(tool.name, {})
                    assert result.is_error is False, (block.id, tool.name, result.content)
