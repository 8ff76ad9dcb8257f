"""How the protocol core reaches the tasks extension, which lives above it (`mcp_asgi.tasks`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mcp_asgi.protocol.dispatch import Call


class TaskHooks(Protocol):
    """The tasks extension as the core sees it (`mcp_asgi.tasks.methods.TaskSupport`, set by the server)."""

    async def call_tool(self, tool: Any, call: Call) -> dict[str, Any]:
        """`tools/call` of a tool declared with task support: a task handle or a blocking result."""
        ...

    def advertise(self, capabilities: dict[str, Any]) -> None:
        """Add the extension to the capabilities `server/discover` answers with."""
        ...

    async def listen(self, call: Call, task_ids: Any) -> tuple[list[str], Any]:
        """`subscriptions/listen` asked for `taskIds`: the ids agreed, and their watcher."""
        ...
