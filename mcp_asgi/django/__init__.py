"""Serve an MCP server beside a Django project, from the project's `asgi.py`.

    from django.core.asgi import get_asgi_application
    from mcp_asgi.django import mount_django
    from myproject.mcp import mcp

    application = mount_django(get_asgi_application(), "/mcp", mcp)

Requests under `/mcp` go to the MCP server, everything else to Django. The combined app
answers `lifespan` itself (Django's handler refuses it), so the server's lifespan runs.
Each MCP request is handled as Django handles its own: in a fresh `ThreadSensitiveContext`,
between `request_started` and `request_finished` (which close stale DB connections), with the
script prefix set, and sync tools run by `sync_to_async(thread_sensitive=True)`, so the ORM
works in sync tools and async tools can use the async ORM API. `get_user(ctx)` /
`await aget_user(ctx)` give the user Django's session and auth machinery find for the
request's cookie.

Add `"mcp_asgi.django"` to `INSTALLED_APPS` to have `manage.py runserver` (WSGI, so no MCP)
say so at start and answer MCP requests with that message instead of a 404.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.urls import set_script_prefix
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi.asgi.lifespan import combine_lifespans
from mcp_asgi.asgi.prefix import check_prefix, mounted_scope, target_app
from mcp_asgi.concurrency import sync_runner

if TYPE_CHECKING:
    from django.http import HttpRequest

    from mcp_asgi.context import Context

__all__ = ["DjangoHost", "aget_user", "get_request", "get_user", "mount_django"]

T = TypeVar("T")

# Where a call's Django request is kept once built, in the ASGI scope of the MCP request.
_REQUEST_KEY = "mcp_asgi.django_request"


def mount_django(django_app: ASGIApp, path: str, target: Any) -> DjangoHost:
    """Serve `target` (an MCP server or an ASGI app) at `path` beside `django_app`; returns the ASGI app.

    `django_app` is what `get_asgi_application()` returns (any ASGI app works). `{path}` and
    `{path}/...` reach the MCP server without a redirect; the rest reaches Django untouched.
    """
    if not callable(django_app):
        raise TypeError(f"mount_django() `django_app` must be an ASGI app (get_asgi_application()), got {django_app!r}")
    return DjangoHost(django_app, check_prefix(path, "mount_django"), target_app(target, "mount_django"))


async def _thread_sensitive(fn: Callable[[], T]) -> T:
    # What Django itself uses to enter sync code from async code: one thread per request
    # context, so the ORM's thread-bound connection is the one `request_finished` closes.
    result: T = await sync_to_async(fn, thread_sensitive=True)()
    return result


async def _send_signal(signal: Any, **kwargs: Any) -> None:
    asend = getattr(signal, "asend", None)  # Django 5.0+
    if asend is not None:
        await asend(**kwargs)
    else:
        await sync_to_async(signal.send)(**kwargs)


class DjangoHost:
    """The ASGI app `mount_django()` returns: MCP under one path, Django for the rest, and the lifespan.

    `ctx.app` in tools is this object; `.django_app` is Django's handler, `.mcp_app` the MCP app.
    """

    def __init__(self, django_app: ASGIApp, prefix: str, mcp_app: ASGIApp) -> None:
        self.django_app = django_app
        self.prefix = prefix
        self.mcp_app = mcp_app
        # Starlette's router speaks the lifespan protocol around our combined lifespan.
        self._lifespan = Router(lifespan=combine_lifespans(mcp_app))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # Django's handler raises on this scope; the MCP server's lifespan is ours to run.
            await self._lifespan.lifespan({**scope, "app": self}, receive, send)
            return
        child = mounted_scope(scope, self.prefix, self) if scope["type"] == "http" else None
        if child is None:
            await self.django_app(scope, receive, send)
            return
        await self._serve_mcp(scope, child, receive, send)

    async def _serve_mcp(self, scope: Scope, child: Scope, receive: Receive, send: Send) -> None:
        from django.core.handlers.asgi import ASGIHandler, get_script_prefix

        # As Django's ASGIHandler serves a request: its own thread context, the request signals
        # (which reset query logs and close stale connections), and `reverse()` giving the
        # project's URLs: the script prefix is where Django is served, not the MCP path.
        async with ThreadSensitiveContext():
            set_script_prefix(get_script_prefix(scope))
            token = sync_runner.set(_thread_sensitive)
            await _send_signal(signals.request_started, sender=ASGIHandler, scope=scope)
            try:
                await self.mcp_app(child, receive, send)
            finally:
                sync_runner.reset(token)
                await _send_signal(signals.request_finished, sender=ASGIHandler)

    def __repr__(self) -> str:
        return f"DjangoHost(prefix={self.prefix!r}, django_app={self.django_app!r})"


def get_request(ctx: Context) -> HttpRequest:
    """A Django `HttpRequest` for this MCP call (headers, cookies, `session`), built once per request.

    Its `session` is loaded lazily from the cookie by the project's `SESSION_ENGINE`, as
    `SessionMiddleware` would. Needs an HTTP request (not stdio).
    """
    request = ctx.request
    if request is None:
        raise RuntimeError("get_request() needs an MCP call that came over HTTP; this one has no request")
    scope = request.scope
    django_request: HttpRequest | None = scope.get(_REQUEST_KEY)
    if django_request is None:
        from importlib import import_module

        from django.conf import settings
        from django.core.handlers.asgi import ASGIRequest

        # The body was read by the MCP endpoint; the session and user need only the headers.
        django_request = ASGIRequest(scope, io.BytesIO())
        engine = import_module(settings.SESSION_ENGINE)
        django_request.session = engine.SessionStore(django_request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        scope[_REQUEST_KEY] = django_request
    return django_request


def get_user(ctx: Context) -> Any:
    """The Django user of this call (`AnonymousUser` without a valid session), from sync code.

    Resolved on first use by `django.contrib.auth.get_user` from the session cookie, then kept
    for the rest of the request. Sync tools run in Django's thread-sensitive executor, where
    this may query the database; async tools use `await aget_user(ctx)`.
    """
    request = get_request(ctx)
    user = getattr(request, "_cached_user", None)
    if user is None:
        from django.contrib.auth import get_user as django_get_user

        user = request._cached_user = django_get_user(request)  # type: ignore[attr-defined]
    return user


async def aget_user(ctx: Context) -> Any:
    """`get_user(ctx)` for async code: the session and user lookups run in Django's sync executor."""
    request = get_request(ctx)
    user = getattr(request, "_cached_user", None)
    if user is None:
        user = await sync_to_async(get_user, thread_sensitive=True)(ctx)
    return user
