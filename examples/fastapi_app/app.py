"""A FastAPI app with an MCP server mounted at /mcp beside its normal JSON routes.

    python examples/fastapi_app/app.py        # or: ./scripts/example

The host's lifespan opens a (toy) notes database; MCP tools reach it through
`ctx.request.state`, and read the host's `app.state` through `ctx.app`.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp_asgi import Context, MCPServer, cors_middleware, mount


class NotesDB:
    """Stands in for a real connection pool: opened by the lifespan, closed after."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.open = True

    def close(self) -> None:
        self.open = False


mcp = MCPServer("Notes", version="1.0.0", instructions="Keeps short notes for the user.")


@mcp.tool
async def add_note(text: str, ctx: Context) -> dict:
    """Save a note; returns its number."""
    db: NotesDB = ctx.request.state.db
    db.notes.append(text)
    await ctx.info(f"saved note {len(db.notes)}")
    return {"number": len(db.notes), "text": text}


@mcp.tool
async def list_notes(ctx: Context) -> list[str]:
    """All notes saved so far."""
    return ctx.request.state.db.notes


@mcp.tool
def app_info(ctx: Context) -> dict:
    """What the host application says about itself."""
    return {"title": ctx.app.title, "motto": ctx.app.state.motto}


@mcp.resource("notes://{number}")
def note(number: int, ctx: Context) -> str:
    """One note by its number."""
    return ctx.request.state.db.notes[number - 1]


@mcp.prompt
def summarize_notes(style: str = "bullet points") -> str:
    """Ask the model to summarize the notes."""
    return f"Read every note with list_notes and summarize them as {style}."


@mcp.custom_route("/health", methods=["GET"])
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(app: FastAPI):
    db = NotesDB()
    yield {"db": db}
    db.close()


app = FastAPI(
    title="Notes API",
    lifespan=lifespan,
    middleware=[cors_middleware(allow_origins=["http://localhost:5173"])],
)
app.state.motto = "Write it down."


@app.get("/api/notes")
async def api_notes(request: Request) -> dict:
    return {"notes": request.state.db.notes}


# MCP at /mcp (and its custom route at /mcp/health); the server's lifespan runs inside the host's.
mount(app, "/mcp", mcp)


if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"MCP endpoint: http://{host}:{port}/mcp   (JSON API: http://{host}:{port}/api/notes)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("LOG_LEVEL", "info"))
