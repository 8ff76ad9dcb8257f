"""A Django project with an MCP server at /mcp beside its own JSON routes.

    uvicorn examples.django_project.app:app       # from the repository root

On startup the MCP server's lifespan creates the SQLite database (migrations) and a few books.
`/api/books` is a Django view; the MCP tools read the same rows through the ORM (sync and
async), and `whoami`/`add_book` see the Django user of the request's session cookie.
This is what a project's `asgi.py` looks like with mcp-asgi.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

from mcp_asgi.django import mount_django  # noqa: E402

# Sets Django up (settings, apps) before the tools import their models.
django_app = get_asgi_application()

from examples.django_project.mcp_tools import mcp  # noqa: E402

app = mount_django(django_app, "/mcp", mcp)
