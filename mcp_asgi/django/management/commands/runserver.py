"""`manage.py runserver` that says MCP needs the ASGI application, and answers MCP requests so.

Django's development server is WSGI: it never imports `asgi.py`, so `mount_django()` never
runs and `/mcp` would be a bare 404. With `"mcp_asgi.django"` in `INSTALLED_APPS` (before
`django.contrib.staticfiles`, whose runserver this one extends when it is installed), the
server prints how to serve the project with an ASGI server, and requests under
`settings.MCP_ASGI_PATH` (default `/mcp`) get a 503 whose JSON-RPC error says the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

if "django.contrib.staticfiles" in settings.INSTALLED_APPS:
    from django.contrib.staticfiles.management.commands.runserver import Command as BaseRunserver
else:
    from django.core.management.commands.runserver import Command as BaseRunserver


def _message() -> str:
    # ASGI_APPLICATION is a dotted path ("mysite.asgi.application"); servers take "module:attribute".
    module, _, attribute = (getattr(settings, "ASGI_APPLICATION", None) or "mysite.asgi.application").rpartition(".")
    target = f"{module}:{attribute}"
    return (
        "mcp-asgi: `manage.py runserver` serves Django over WSGI, which cannot serve MCP. "
        f"Serve the ASGI application that calls mount_django() instead, e.g. `uvicorn {target} --reload`."
    )


class MCPGuard:
    """A WSGI app: the MCP path gets a JSON-RPC error naming the fix, the rest goes to Django."""

    def __init__(self, app: Callable[..., Iterable[bytes]], prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            return self.app(environ, start_response)
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": _message()}}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("503 Service Unavailable", headers)
        return [body]

    def __getattr__(self, name: str) -> Any:
        # staticfiles' handler and the test machinery read attributes of the WSGI handler.
        return getattr(self.app, name)


class Command(BaseRunserver):
    def get_handler(self, *args: Any, **options: Any) -> Any:
        self.stdout.write(self.style.WARNING(_message()))
        return MCPGuard(super().get_handler(*args, **options), getattr(settings, "MCP_ASGI_PATH", "/mcp"))
