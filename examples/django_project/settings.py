"""Settings of the example Django project: SQLite, sessions and auth, the `library` app."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# An example's key: set DJANGO_SECRET_KEY for anything that is not a local demo.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    # Makes `manage.py runserver` say that MCP needs the ASGI application (see mcp_asgi/django).
    "mcp_asgi.django",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "examples.django_project.library",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "examples.django_project.urls"
ASGI_APPLICATION = "examples.django_project.app.app"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # LIBRARY_DB moves the database (the tests give each run its own file).
        "NAME": os.environ.get("LIBRARY_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
