"""The scope an app mounted under a path prefix receives, for hosts with no router to mount into.

Django, Quart and hand-written ASGI hosts send every request to one callable; their MCP adapter
picks the requests under the prefix itself. It builds the same child scope Starlette's `Mount`
(and `mcp_asgi.asgi.mount.ExactMount` for the bare prefix) would: `root_path` grows by the
prefix and `path` stays whole, so the MCP app routes the rest and builds its URLs as usual.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Scope

from mcp_asgi.asgi.mount import _route_path

__all__ = ["check_prefix", "mounted_scope", "target_app"]


def check_prefix(path: Any, caller: str) -> str:
    """`path` without its trailing slash; a clear error for anything that is not a non-root path."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{caller}() `path` must be a string starting with '/', got {path!r}")
    prefix = path.rstrip("/")
    if not prefix:
        raise ValueError(f"{caller}() `path` cannot be '/': the host would never see a request; use e.g. '/mcp'")
    return prefix


def mounted_scope(scope: Scope, prefix: str, host: Any) -> Scope | None:
    """The child scope for a request under `prefix` (`{prefix}` or `{prefix}/...`), else None.

    `scope["app"]` becomes `host`, which is what `ctx.app` reports to tools.
    """
    route_path = _route_path(scope)
    if route_path == prefix:
        # Answered here, not redirected: MCP clients POST to `/mcp` and not all follow a 307.
        path = scope["path"] + "/"
    elif route_path.startswith(prefix) and route_path[len(prefix)] == "/":
        path = scope["path"]
    else:
        return None
    child = dict(scope)
    child["app"] = host
    child["root_path"] = scope.get("root_path", "") + prefix
    child["path"] = path
    return child


def target_app(target: Any, caller: str) -> ASGIApp:
    """The ASGI app of `target`: an MCP server's mountable app, or `target` itself."""
    factory = getattr(target, "__mcp_asgi_app__", None)
    if callable(factory):
        app = factory()
        if not callable(app):
            raise TypeError(f"{caller}() `target.__mcp_asgi_app__()` must return an ASGI app, got {app!r}")
        return app
    if not callable(target):
        raise TypeError(f"{caller}() `target` must be an MCP server or an ASGI app, got {target!r}")
    return target
