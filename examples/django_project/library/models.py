"""The example's data: books, read by the JSON routes and the MCP tools alike."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.urls import reverse


class Book(models.Model):
    title = models.CharField(max_length=200)
    author = models.CharField(max_length=200)
    year = models.IntegerField()
    # Who added it through MCP (None for the seed data).
    added_by = models.CharField(max_length=150, blank=True, default="")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "author": self.author,
            "year": self.year,
            "added_by": self.added_by,
            # Where the project serves it: reverse() knows the root path the project is served under.
            "url": reverse("book", args=[self.id]),
        }
