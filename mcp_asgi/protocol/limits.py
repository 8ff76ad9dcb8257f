"""Limits on what one client can make the server hold, shared by the core and the session records.

Read at call time (`limits.MAX_SUBSCRIPTIONS`), so a deployment can change them at start-up.
"""

from __future__ import annotations

from typing import Any

from mcp_asgi.protocol.jsonrpc import invalid_params

# Resource URIs one session subscribes to (`resources/subscribe`), or one
# `subscriptions/listen` stream watches; real clients use a handful.
MAX_SUBSCRIPTIONS = 100
# Characters in one subscribed URI.
MAX_URI_LENGTH = 2048


def subscription_uris(uris: list[Any]) -> list[str]:
    """The distinct string URIs of a `resourceSubscriptions` list, in order; -32602 past the limits."""
    kept: dict[str, None] = {}
    for uri in uris:
        if not isinstance(uri, str):
            continue
        if len(uri) > MAX_URI_LENGTH:
            raise invalid_params(f"Invalid params: a subscribed URI may be at most {MAX_URI_LENGTH} characters")
        kept[uri] = None
        if len(kept) > MAX_SUBSCRIPTIONS:
            raise invalid_params(
                f"Invalid params: `resourceSubscriptions` may list at most {MAX_SUBSCRIPTIONS} URIs; "
                "open another subscriptions/listen for more"
            )
    return list(kept)
