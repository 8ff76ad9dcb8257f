"""mcp-asgi: MCP servers inside any ASGI app, or on their own."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from mcp_asgi.asgi import combine_lifespans, cors_middleware, mount
from mcp_asgi.components.content import Audio, Image
from mcp_asgi.components.content import File as FileContent
from mcp_asgi.components.tools import ToolError, ToolResult
from mcp_asgi.context import Context
from mcp_asgi.middleware import MCPRequest
from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.protocol.mrtr import Elicit, ListRoots, Sample
from mcp_asgi.protocol.param_headers import ParamHeader
from mcp_asgi.server import FastMCP, MCPServer
from mcp_asgi.transports.events import EventStore, InMemoryEventStore
from mcp_asgi.transports.sessions import InMemorySessionStore, SessionRecord, SessionStore

if TYPE_CHECKING:  # imported on first use, see _LAZY
    from mcp_asgi.components.prompt_message import PromptMessage
    from mcp_asgi.protocol.answers import ElicitationResult, SamplingResult

__all__ = [
    "Audio",
    "Context",
    "Elicit",
    "EventStore",
    "ElicitationResult",
    "FastMCP",
    "FileContent",
    "Image",
    "InMemoryEventStore",
    "InMemorySessionStore",
    "ListRoots",
    "MCPError",
    "MCPRequest",
    "MCPServer",
    "ParamHeader",
    "PromptMessage",
    "Sample",
    "SamplingResult",
    "SessionRecord",
    "SessionStore",
    "ToolError",
    "ToolResult",
    "combine_lifespans",
    "cors_middleware",
    "mount",
]
__version__ = "0.1.0"

# Old names that clash with what users import beside us (fastapi.Header, fastapi.File,
# starlette.types.Message); they keep working, with a warning, for one release.
_DEPRECATED = {"Header": "ParamHeader", "File": "FileContent", "Message": "PromptMessage"}


# Public names imported on first use: `PromptMessage` is a pydantic model, and pydantic's model
# machinery is a fifth of `import mcp_asgi` (tools build their models when they are registered);
# creating a dataclass exec()s the source of its methods, and the answers to `ctx.elicit` and
# `ctx.sample` are only needed once a client answers.
_LAZY = {
    "PromptMessage": "mcp_asgi.components.prompt_message",
    "ElicitationResult": "mcp_asgi.protocol.answers",
    "SamplingResult": "mcp_asgi.protocol.answers",
}


def _lazy(name: str) -> Any:
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return _lazy(name)
    new = _DEPRECATED.get(name)
    if new is None:
        raise AttributeError(f"module 'mcp_asgi' has no attribute {name!r}")
    warnings.warn(
        f"mcp_asgi.{name} is deprecated and will be removed in the next release; use mcp_asgi.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return _lazy(new) if new in _LAZY else globals()[new]
