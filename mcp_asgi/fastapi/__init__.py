"""FastAPI integration: existing routes as MCP tools (FastAPI is imported when they are added).

from mcp_asgi.fastapi import add_routes

add_routes(mcp, app, include_tags=["notes"])   # the same as mcp.add_routes(app, ...)
"""

from __future__ import annotations

from mcp_asgi.fastapi.calls import STATUS_META_KEY
from mcp_asgi.fastapi.routes import DEFAULT_FORWARD_HEADERS, DEFAULT_MAX_RESPONSE_BYTES, add_routes

__all__ = ["DEFAULT_FORWARD_HEADERS", "DEFAULT_MAX_RESPONSE_BYTES", "STATUS_META_KEY", "add_routes"]
