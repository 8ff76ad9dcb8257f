"""A FastAPI app with an MCP server whose tools, resources and prompts use FastAPI dependencies."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import anyio
from fastapi import Cookie, Depends, FastAPI, Header, HTTPException, Request, Security
from fastapi.security import SecurityScopes

from mcp_asgi import MCPServer, mount

# What the dependencies and tools did, in order (the server runs in uvicorn's thread).
EVENTS: list[str] = []
STARTED = threading.Event()
COUNTER = {"n": 0}


async def inner() -> Any:
    EVENTS.append("inner open")
    try:
        yield "inner"
    except BaseException as exc:
        EVENTS.append(f"inner saw {type(exc).__name__}")
        raise
    finally:
        EVENTS.append("inner close")


def outer(value: Annotated[str, Depends(inner)]) -> Any:
    # A sync generator: FastAPI runs it in a thread, and closes it in one.
    EVENTS.append("outer open")
    try:
        yield f"outer+{value}"
    except BaseException as exc:
        EVENTS.append(f"outer saw {type(exc).__name__}")
        raise
    finally:
        EVENTS.append("outer close")


def current_user(x_user: Annotated[str | None, Header()] = None) -> str:
    if x_user is None:
        raise HTTPException(401, "Send X-User", headers={"WWW-Authenticate": "X-User"})
    return x_user


def theme(theme: Annotated[str, Cookie()] = "light") -> str:
    return theme


def scoped_user(security_scopes: SecurityScopes, user: Annotated[str, Depends(current_user)]) -> str:
    return f"{user}:{' '.join(security_scopes.scopes)}"


def admin_only(user: Annotated[str, Depends(current_user)]) -> str:
    if user != "root":
        raise HTTPException(403, f"{user} is not an admin")
    return user


def api_key(x_api_key: Annotated[str, Header()]) -> str:
    return x_api_key


def counter() -> int:
    COUNTER["n"] += 1
    return COUNTER["n"]


def feature_flag() -> str:
    return "real"


def build_app() -> FastAPI:
    mcp = MCPServer("deps")

    @mcp.tool
    async def traced(mode: str, value: Annotated[str, Depends(outer)]) -> str:
        """Records when it runs; fails or waits on request."""
        EVENTS.append(f"tool got {value}")
        if mode == "fail":
            raise ValueError("boom")
        if mode == "wait":
            STARTED.set()
            await anyio.sleep(60)
        return "done"

    @mcp.tool
    def whoami(note: str, user: str = Depends(current_user), colour: Annotated[str, Depends(theme)] = "") -> dict:
        return {"user": user, "theme": colour, "note": note}

    @mcp.tool
    async def scoped(user: Annotated[str, Security(scoped_user, scopes=["notes:read", "notes:write"])]) -> str:
        return user

    @mcp.tool
    async def counted(
        a: Annotated[int, Depends(counter)],
        b: Annotated[int, Depends(counter)],
        c: int = Depends(counter, use_cache=False),
    ) -> list[int]:
        return [a, b, c]

    @mcp.tool
    async def raw_request(request: Request) -> dict:
        return {"user": request.headers.get("x-user"), "app": type(request.app).__name__}

    @mcp.tool
    async def admin(user: Annotated[str, Depends(admin_only)]) -> str:
        return f"welcome {user}"

    @mcp.tool
    async def refuse() -> str:
        raise HTTPException(409, detail={"reason": "conflict", "id": 7})

    @mcp.tool
    async def keyed(key: Annotated[str, Depends(api_key)]) -> str:
        return key

    @mcp.tool
    async def flagged(flag: Annotated[str, Depends(feature_flag)]) -> str:
        return flag

    @mcp.resource("notes://mine")
    async def my_notes(user: Annotated[str, Depends(current_user)]) -> str:
        return f"notes of {user}"

    @mcp.resource("notes://admin/{name}")
    async def admin_note(name: str, user: Annotated[str, Depends(admin_only)]) -> str:
        return f"{name} for {user}"

    @mcp.prompt
    def greet(style: str, user: Annotated[str, Depends(current_user)]) -> str:
        return f"Greet {user} in a {style} way"

    app = FastAPI()
    app.dependency_overrides[feature_flag] = lambda: "overridden"
    mount(app, "/mcp", mcp)
    return app
