"""A server for hostile-input tests: tools of several argument shapes, plus the shared demo ones."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
import pydantic

from mcp_asgi import Context, MCPServer, ParamHeader
from tests.servers import build_server


class Item(pydantic.BaseModel):
    name: str
    quantity: int = 1
    tags: list[str] = []


def build_hostile_server() -> MCPServer:
    mcp = build_server()

    return add_argument_shapes(mcp)


def add_argument_shapes(mcp: MCPServer) -> MCPServer:
    """Tools taking any JSON, text, nested models with literals, a mirrored header, and elicitation."""

    @mcp.tool
    def echo(value: Any) -> Any:
        """Return any JSON value as given."""
        return value

    @mcp.tool
    def echo_text(text: str) -> str:
        return text

    @mcp.tool
    def order(items: list[Item], mode: Literal["fast", "cheap"] = "fast", note: str | None = None) -> dict:
        return {"count": sum(item.quantity for item in items), "mode": mode, "note": note}

    @mcp.tool
    def regional(region: Annotated[str, ParamHeader("Region")], limit: int = 3) -> str:
        return f"{region}:{limit}"

    @mcp.tool
    async def ask_name(ctx: Context) -> str:
        answer = await ctx.elicit("Your name?", {"type": "object", "properties": {"name": {"type": "string"}}})
        return str(answer.content)

    return mcp


def lenient_client(app: Any) -> httpx.AsyncClient:
    """In-process client that shows a 500 as a response instead of raising the app's exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def build_fuzz_server() -> MCPServer:
    """Tools, resources and prompts whose handlers finish promptly whatever their arguments."""
    mcp = MCPServer("Fuzz", version="0")

    @mcp.tool
    def add(a: int, b: int) -> int:
        return a + b

    add_argument_shapes(mcp)

    @mcp.resource("data://config", mime_type="application/json")
    def config() -> dict:
        return {"debug": True}

    @mcp.resource("users://{user_id}/profile")
    def profile(user_id: int) -> str:
        return f"profile of {user_id}"

    @mcp.prompt
    def review(code: str, language: str = "python") -> str:
        return f"Review this {language}: {code}"

    @mcp.completion
    def complete(ref: dict, argument: dict) -> list[str]:
        value = argument.get("value", "")
        return [option for option in ("python", "pascal", "perl") if option.startswith(str(value))]

    return mcp
