"""What a client is told when user code fails unexpectedly, with or without `mask_error_details`.

An exception's text often carries what a server should keep to itself: a connection string,
a file path, a query. With masking on the client gets only which call failed and the log gets
the traceback; with it off (the default, as in FastMCP) the text goes along, because a model
reading "column 'nmae' does not exist" can correct its next call.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp_asgi.dependencies import REQUEST_ERRORS, request_error
from mcp_asgi.protocol.jsonrpc import INTERNAL_ERROR, MCPError
from mcp_asgi.protocol.mrtr import InputRequired

logger = logging.getLogger("mcp_asgi")

# Raised on purpose by user code or the context (a missing capability, input required):
# protocol outcomes that pass through untouched.
PASS_THROUGH = (MCPError, InputRequired)


def failure_text(what: str, exc: BaseException, *, mask: bool) -> str:
    """`what` ("Error calling tool 'x'") alone when masking, else followed by the exception's text."""
    if mask:
        return what
    return f"{what}: {exc}" if str(exc) else f"{what}: {type(exc).__name__}"


async def call_user_code(call: Any, kwargs: dict[str, Any], context: Any, *, what: str, mask: bool) -> Any:
    """`await call(kwargs, context)`; an unexpected exception is logged and becomes a -32603 error.

    For resources, prompts and completions, whose failures are JSON-RPC errors (a tool's
    are results, see `Tool.run`).
    """
    try:
        return await call(kwargs, context)
    except PASS_THROUGH:
        raise
    except REQUEST_ERRORS as exc:
        raise request_error(exc) from exc
    except Exception as exc:
        logger.exception("%s", what)
        raise MCPError(INTERNAL_ERROR, failure_text(what, exc, mask=mask)) from exc
