"""mcp-asgi: MCP servers inside any ASGI app, or on their own."""

from mcp_asgi.asgi import combine_lifespans, cors_middleware, mount
from mcp_asgi.components.content import Audio, File, Image
from mcp_asgi.components.prompts import Message
from mcp_asgi.components.tools import ToolError, ToolResult
from mcp_asgi.context import Context
from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.protocol.mrtr import Elicit, ElicitationResult, ListRoots, Sample, SamplingResult
from mcp_asgi.protocol.param_headers import Header
from mcp_asgi.server import FastMCP, MCPServer
from mcp_asgi.transports.events import EventStore, InMemoryEventStore
from mcp_asgi.transports.sessions import InMemorySessionStore, SessionRecord, SessionStore

__all__ = [
    "Audio",
    "Context",
    "Elicit",
    "EventStore",
    "ElicitationResult",
    "FastMCP",
    "File",
    "Header",
    "Image",
    "InMemoryEventStore",
    "InMemorySessionStore",
    "ListRoots",
    "MCPError",
    "MCPServer",
    "Message",
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
