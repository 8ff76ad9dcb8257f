"""The MCP endpoint as an OAuth 2.1 resource server: bearer tokens, their verifiers, RFC 9728 metadata.

Names are imported on first use, so `import mcp_asgi.auth` never imports a JOSE library
or anything a deployment without auth does not need.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AccessToken": "mcp_asgi.auth.tokens",
    "TokenVerifier": "mcp_asgi.auth.tokens",
    "JWTVerifier": "mcp_asgi.auth.jwt",
    "IntrospectionVerifier": "mcp_asgi.auth.introspection",
    "BearerAuth": "mcp_asgi.auth.bearer",
    "HostAuth": "mcp_asgi.auth.bearer",
    "metadata_routes": "mcp_asgi.auth.metadata",
    "InsufficientScope": "mcp_asgi.protocol.scopes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mcp_asgi.auth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
