"""`python -m mcp_asgi ...`: the `mcp-asgi` command."""

import sys

from mcp_asgi.cli import main

sys.exit(main())
