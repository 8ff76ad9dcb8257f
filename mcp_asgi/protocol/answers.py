"""What `ctx.elicit(...)` and `ctx.sample(...)` return.

Apart from `mrtr` so that `import mcp_asgi` does not create these dataclasses (creating one
exec()s the source of its methods); they are loaded with the first answer a client gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ElicitationResult:
    """The user's answer to `ctx.elicit(...)`: `action` is "accept", "decline" or "cancel"."""

    action: str
    content: dict[str, Any] | None = None
    # The content validated into the pydantic model given as the schema, if one was.
    data: Any = None

    @property
    def accepted(self) -> bool:
        return self.action == "accept"


@dataclass
class SamplingResult:
    """The client's LLM completion for `ctx.sample(...)`."""

    role: str
    content: Any
    model: str | None = None
    stop_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str | None:
        content = self.content
        if isinstance(content, dict) and content.get("type") == "text":
            return content.get("text")
        if isinstance(content, list):
            texts = [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
            return "".join(texts) if texts else None
        return None
