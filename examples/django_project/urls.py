"""The project's own JSON routes: the same data the MCP tools read."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.urls import path

from examples.django_project.library.models import Book


async def books(request: HttpRequest) -> JsonResponse:
    rows = [book.as_dict() async for book in Book.objects.order_by("id")]
    return JsonResponse({"books": rows})


async def book(request: HttpRequest, book_id: int) -> JsonResponse:
    found = await Book.objects.filter(id=book_id).afirst()
    if found is None:
        return JsonResponse({"error": "no such book"}, status=404)
    return JsonResponse(found.as_dict())


async def me(request: HttpRequest) -> JsonResponse:
    # AuthenticationMiddleware's lazy user reads the session: sync code, so off the event loop.
    username = await sync_to_async(lambda: request.user.get_username() or None)()
    return JsonResponse({"username": username})


urlpatterns = [
    path("api/books", books, name="books"),
    path("api/books/<int:book_id>", book, name="book"),
    path("api/me", me, name="me"),
]
