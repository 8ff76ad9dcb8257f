"""A demo server the tests share."""

from __future__ import annotations

import threading
from typing import Annotated

import pydantic

from mcp_asgi import Context, Image, MCPServer, ToolError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


class Weather(pydantic.BaseModel):
    city: str
    celsius: float


def build_server(**options) -> MCPServer:
    mcp = MCPServer("Demo", version="1.2.3", instructions="A server for tests", **options)

    @mcp.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @mcp.tool(name="weather", description="Weather for a city", annotations={"readOnlyHint": True})
    async def get_weather(city: Annotated[str, pydantic.Field(description="City name")]) -> Weather:
        return Weather(city=city, celsius=21.5)

    @mcp.tool()
    def which_thread() -> str:
        """The name of the thread the tool runs in."""
        return threading.current_thread().name

    @mcp.tool
    def fail(message: str) -> str:
        raise ToolError(message)

    @mcp.tool
    def crash() -> str:
        raise RuntimeError("disk on fire")

    @mcp.tool
    def picture() -> Image:
        return Image(data=PNG)

    @mcp.tool
    async def slow_steps(steps: int, ctx: Context) -> str:
        for done in range(1, steps + 1):
            await ctx.report_progress(done, steps, f"step {done}")
            await ctx.info(f"did step {done}")
        return f"{steps} steps"

    @mcp.tool
    async def whoami(ctx: Context) -> dict:
        request = ctx.request
        return {
            "path": request.url.path if request is not None else None,
            "version": ctx.protocol_version,
            "server": request.app.state.mcp_server.name if request is not None else None,
        }

    @mcp.resource("data://config", mime_type="application/json", description="Configuration")
    def config() -> dict:
        return {"debug": True}

    @mcp.resource("data://logo")
    def logo() -> bytes:
        return PNG

    @mcp.resource("users://{user_id}/profile")
    def profile(user_id: int) -> str:
        """A user's profile."""
        return f"profile of {user_id}"

    @mcp.prompt
    def review(code: str, language: str = "python") -> str:
        """Review some code."""
        return f"Review this {language}: {code}"

    @mcp.prompt(name="chat")
    def chat(topic: str) -> list:
        return [{"role": "user", "content": f"Talk about {topic}"}, {"role": "assistant", "content": "Sure."}]

    @mcp.completion
    def complete(ref: dict, argument: dict) -> list[str]:
        options = ["python", "pascal", "perl", "rust"]
        return [o for o in options if o.startswith(argument.get("value", ""))]

    return mcp
