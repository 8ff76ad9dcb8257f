"""Mount an MCP app (or any ASGI app) in a Starlette/FastAPI app, lifespan included.

A plain `app.mount("/mcp", mcp_app)` serves the routes but never runs the mounted app's
lifespan, and `POST /mcp` gets a 307 to `/mcp/`. `mount()` fixes both, and registers the
RFC 9728 metadata of a protected MCP server at the host's root.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Match, Mount, Router, compile_path
from starlette.types import ASGIApp, Scope

from mcp_asgi.asgi.lifespan import combine_lifespans

__all__ = ["ExactMount", "mount"]


def mount(app: Any, path: str, target: Any, *, name: str | None = None) -> None:
    """Serve `target` under `path` in `app`, and run its lifespan inside `app`'s.

    `target` is an MCP server (anything with `__mcp_asgi_app__()`) or any ASGI app. `POST
    {path}` and `{path}/...` both reach it without a redirect. The host's lifespan is
    wrapped, whether it came from `lifespan=`, from `on_startup` handlers or was absent, so
    starting the host (uvicorn, `TestClient`, an outer `mount`) starts the target too.
    A server built with `auth=` gets its RFC 9728 metadata served by `app` at
    `/.well-known/oauth-protected-resource{path}` (no token needed), which its 401 challenges name.

        app = FastAPI()
        mount(app, "/mcp", mcp)
    """
    router = getattr(app, "router", None)
    if not isinstance(router, Router):
        raise TypeError(f"mount() `app` must be a Starlette or FastAPI application, got {app!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"mount() `path` must be a string starting with '/', got {path!r}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"mount() `name` must be a string or None, got {name!r}")
    target_app = _target_app(target)
    if target_app is app:
        raise ValueError("mount() `target` cannot be `app` itself: its lifespan would enter itself forever")

    gate = getattr(getattr(target_app, "state", None), "mcp_auth_gate", None)
    metadata_for = None
    if gate is not None:
        from mcp_asgi.auth.metadata import metadata_routes

        # First: a catch-all mount of the host (a SPA's static files, say) must not shadow it.
        endpoint_path = path.rstrip("/") + gate.endpoint_path
        router.routes[:0] = metadata_routes(gate.auth, endpoint_path.rstrip("/") or "/")
        metadata_for = target_app
    router.routes.append(ExactMount(path, app=target_app, name=name, metadata_for=metadata_for))
    router.lifespan_context = combine_lifespans(router.lifespan_context, target_app)


def _target_app(target: Any) -> ASGIApp:
    factory = getattr(target, "__mcp_asgi_app__", None)
    if callable(factory):
        target_app = factory()
        if not callable(target_app):
            raise TypeError(f"mount() `target.__mcp_asgi_app__()` must return an ASGI app, got {target_app!r}")
        return target_app
    if not callable(target):
        raise TypeError(f"mount() `target` must be an MCP server or an ASGI app, got {target!r}")
    return target


class ExactMount(Mount):
    """A `Mount` that also answers its own path without the trailing slash.

    Starlette's `Mount("/mcp")` matches `/mcp/...` only, and the router's `redirect_slashes`
    answers `/mcp` with a 307, which MCP clients POSTing to `/mcp` do not all follow. For
    `/mcp` this route hands the app the scope Mount would give `/mcp/`: `root_path` grows by
    the matched prefix and `path` keeps the full path (now with a trailing slash), so the
    mounted app routes it as `/` and builds its URLs from `root_path` as usual.

    `metadata_for` is the mounted MCP app whose metadata `mount()` registered on the host: the
    requests routed to it carry the host's `root_path`, so its challenges point at that copy.
    """

    def __init__(
        self, path: str, app: ASGIApp, name: str | None = None, *, metadata_for: ASGIApp | None = None
    ) -> None:
        super().__init__(path, app=app, name=name)
        self.exact_regex, _, self.exact_convertors = compile_path(self.path or "/")
        self.metadata_for = metadata_for

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = self._matches(scope)
        if match is not Match.NONE and self.metadata_for is not None:
            from mcp_asgi.auth.resource import METADATA_BASE  # only with auth: `import mcp_asgi` skips it

            child_scope[METADATA_BASE] = (self.metadata_for, scope.get("root_path", ""))
        return match, child_scope

    def _matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE or scope["type"] not in ("http", "websocket") or not self.path:
            return match, child_scope
        root_path = scope.get("root_path", "")
        route_path = _route_path(scope)
        exact = self.exact_regex.match(route_path)
        if exact is None:
            return Match.NONE, {}
        path_params = dict(scope.get("path_params", {}))
        for key, value in exact.groupdict().items():
            path_params[key] = self.exact_convertors[key].convert(value)
        return Match.FULL, {
            "path_params": path_params,
            "app_root_path": scope.get("app_root_path", root_path),
            "root_path": root_path + route_path,
            "path": scope["path"] + "/",
            "endpoint": self.app,
        }


def _route_path(scope: Scope) -> str:
    """The path left to route after `root_path`, as Starlette computes it."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        if path == root_path:
            return ""
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path
