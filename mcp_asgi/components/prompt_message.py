"""`PromptMessage`, in its own module so that `import mcp_asgi` does not build a pydantic model."""

from __future__ import annotations

from typing import Any

import pydantic


class PromptMessage(pydantic.BaseModel):
    """One prompt message: `PromptMessage("Summarise this", role="user")`."""

    # Its validator is built on first use, not when the class is defined.
    model_config = pydantic.ConfigDict(defer_build=True)

    role: str = "user"
    content: Any

    def __init__(self, content: Any = None, /, role: str = "user", **data: Any) -> None:
        if content is not None:
            data["content"] = content
        super().__init__(role=role, **data)
