from __future__ import annotations

from django.apps import AppConfig


class LibraryConfig(AppConfig):
    name = "examples.django_project.library"
    label = "library"
