"""`subscriptions/listen` (2026-07-28): one long-lived request that streams the notifications it opted into.

The stream is a request like any other (`ProtocolCore` dispatches to `listen`); what it
needs from the server (the change hub, the tasks extension, the keep-alive interval) is
passed per call, because the server may change them after the core is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_asgi.concurrency import forward_with_keepalive
from mcp_asgi.protocol import limits
from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, MCPError, invalid_params, notification
from mcp_asgi.protocol.notifications import ChangeHub, Event, event_message

if TYPE_CHECKING:
    from mcp_asgi.protocol.dispatch import Call
    from mcp_asgi.protocol.task_hooks import TaskHooks

META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


async def listen(call: Call, hub: ChangeHub, task_hooks: TaskHooks | None, keepalive_interval: float) -> dict[str, Any]:
    """`subscriptions/listen`: acknowledge, then stream the opted-in notifications until cancelled."""
    requested = call.params.get("notifications")
    if not isinstance(requested, dict):
        raise invalid_params("Invalid params: subscriptions/listen needs a `notifications` filter object")
    agreed: dict[str, Any] = {}
    for flag in ("toolsListChanged", "promptsListChanged", "resourcesListChanged"):
        if requested.get(flag) is True:
            agreed[flag] = True
    uris = requested.get("resourceSubscriptions")
    if isinstance(uris, list):
        # The same caps as `resources/subscribe`: the stream holds these for as long as it lives.
        agreed["resourceSubscriptions"] = limits.subscription_uris(uris)
    tag = {META_SUBSCRIPTION_ID: call.request_id}
    watched = set(agreed.get("resourceSubscriptions", ()))

    def translate(event: Event) -> dict[str, Any] | None:
        wanted = event[1] in watched if event[0] == "resource" else agreed.get(f"{event[0]}ListChanged", False)
        if not wanted:
            return None
        message = event_message(event)
        message["params"] = {**message.get("params", {}), "_meta": tag}
        return message

    if call.send is None:
        raise MCPError(INVALID_REQUEST, "subscriptions/listen needs a transport that can stream")
    tasks = None
    if "taskIds" in requested and task_hooks is not None:
        agreed["taskIds"], tasks = await task_hooks.listen(call, requested["taskIds"])
    stream, stop = hub.listen(translate)
    try:
        acknowledged = notification("notifications/subscriptions/acknowledged", {"_meta": tag, "notifications": agreed})
        if await call.send(acknowledged) is False:
            raise MCPError(
                INVALID_REQUEST, "subscriptions/listen needs an SSE reply; this endpoint has json_response=True"
            )
        send = call.send
        async with stream:
            # None is a keep-alive, for transports that need one.
            forward = forward_with_keepalive(stream, send, lambda: send(None), keepalive_interval)
            await (forward if tasks is None else tasks.alongside(forward, send, tag))
    finally:
        stop()
        if tasks is not None:
            tasks.close()
    # The server ended the subscription (shutdown): a graceful close carries a result.
    return {"_meta": dict(tag)}
