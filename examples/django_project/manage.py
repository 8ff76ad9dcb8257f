#!/usr/bin/env python
"""Django's command line for the example: `python examples/django_project/manage.py <command>`.

Serve with an ASGI server (`uvicorn examples.django_project.app:app`), not `runserver`:
the development server is WSGI and serves no MCP (it says so).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # The project is the package `examples.django_project`: import it from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
