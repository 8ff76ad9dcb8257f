"""Glue between MCP apps and host ASGI apps: lifespans, mounting, CORS."""

from __future__ import annotations

from mcp_asgi.asgi.cors import cors_middleware
from mcp_asgi.asgi.lifespan import SharedLifespan, combine_lifespans
from mcp_asgi.asgi.mount import mount

__all__ = ["SharedLifespan", "combine_lifespans", "cors_middleware", "mount"]
