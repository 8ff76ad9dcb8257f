"""The example's MCP server: tools that read and write the library through Django's ORM.

Sync tools use the ORM as any Django view would (mcp-asgi runs them in Django's thread-sensitive
executor); async tools use the async ORM API. `aget_user`/`get_user` give the Django user of
the request's session cookie. Imported after `django.setup()` (see app.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.management import call_command

from examples.django_project.library.models import Book
from mcp_asgi import Context, MCPServer, ToolError
from mcp_asgi.django import aget_user, get_user

SEED = [
    ("The Left Hand of Darkness", "Ursula K. Le Guin", 1969),
    ("A Wizard of Earthsea", "Ursula K. Le Guin", 1968),
    ("Dune", "Frank Herbert", 1965),
]


def prepare_database() -> None:
    """Create the tables and the first books, so a fresh clone runs with one command."""
    call_command("migrate", interactive=False, verbosity=0)
    if not Book.objects.exists():
        Book.objects.bulk_create(Book(title=t, author=a, year=y) for t, a, y in SEED)


@asynccontextmanager
async def lifespan(server: MCPServer) -> AsyncIterator[dict[str, Any]]:
    # Django code is sync: entered the way Django enters it from async code.
    await sync_to_async(prepare_database, thread_sensitive=True)()
    print("library: MCP lifespan started", file=sys.stderr, flush=True)
    try:
        yield {"started_at": time.time()}
    finally:
        print("library: MCP lifespan stopped", file=sys.stderr, flush=True)


mcp = MCPServer("Library", version="1.0.0", instructions="Looks up and adds books in a library.", lifespan=lifespan)


@mcp.tool
async def host_info(ctx: Context) -> dict:
    """What serves this MCP server: the framework, its version, and how many books it holds."""
    return {
        "framework": "django",
        "version": django.get_version(),
        "books": await Book.objects.acount(),
        "lifespan_running": "started_at" in ctx.lifespan_context,
    }


@mcp.tool
def list_books() -> list[dict]:
    """Every book, oldest entry first (a sync tool using the ORM)."""
    return [book.as_dict() for book in Book.objects.order_by("id")]


@mcp.tool
async def find_books(author: str) -> list[dict]:
    """Books whose author contains `author` (an async tool using the async ORM)."""
    return [book.as_dict() async for book in Book.objects.filter(author__icontains=author).order_by("year")]


@mcp.tool
def whoami(ctx: Context) -> dict:
    """The Django user of this request's session cookie (None when not logged in)."""
    user = get_user(ctx)
    return {"username": user.get_username() if user.is_authenticated else None}


@mcp.tool
async def add_book(title: str, author: str, year: int, ctx: Context) -> dict:
    """Add a book; only for a logged-in Django user (send the session cookie)."""
    user = await aget_user(ctx)
    if not user.is_authenticated:
        raise ToolError("Log in first: add_book needs a Django session cookie")
    book = await Book.objects.acreate(title=title, author=author, year=year, added_by=user.get_username())
    return book.as_dict()
