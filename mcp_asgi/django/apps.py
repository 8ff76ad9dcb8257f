"""The Django app `mcp_asgi.django`: only there so `manage.py runserver` explains that it serves no MCP."""

from __future__ import annotations

from django.apps import AppConfig


class MCPAsgiConfig(AppConfig):
    name = "mcp_asgi.django"
    # Not "django": the default label (the module's last name) would read as Django's own.
    label = "mcp_asgi"
    verbose_name = "mcp-asgi"
