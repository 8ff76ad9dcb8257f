"""A FastAPI app with an MCP server mounted at /mcp beside its normal JSON routes.

    python examples/fastapi_app/app.py        # or: ./scripts/example

The host's lifespan opens a (toy) notes database; MCP tools reach it through
`ctx.request.state`, and read the host's `app.state` through `ctx.app`. The JSON routes
tagged "notes" are tools too (`mcp.add_routes`): called in-process, with the caller's
`Authorization` header reaching their `Depends(author)`.
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from mcp_asgi import Context, MCPServer, cors_middleware, mount


class NotesDB:
    """Stands in for a real connection pool: opened by the lifespan, closed after."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.authors: dict[int, str] = {}
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


class NewNote(BaseModel):
    text: str


class Note(BaseModel):
    number: int
    text: str
    author: str | None = None


async def author(authorization: str | None = Header(None)) -> str:
    """The signed-in user: `Authorization: Bearer <name>` stands in for a real token check."""
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "Sign in with a bearer token", headers={"WWW-Authenticate": "Bearer"})
    return authorization.removeprefix("Bearer ")


@app.get("/api/notes", tags=["notes"], operation_id="get_notes")
async def api_notes(request: Request) -> dict:
    """Every note's text."""
    return {"notes": request.state.db.notes}


@app.get("/api/notes/{number}", tags=["notes"], operation_id="read_note", response_model=Note)
async def read_note(number: int, request: Request) -> Note:
    """One note with its author."""
    db: NotesDB = request.state.db
    if not 1 <= number <= len(db.notes):
        raise HTTPException(404, f"No note {number}")
    return Note(number=number, text=db.notes[number - 1], author=db.authors.get(number))


@app.post("/api/notes", tags=["notes"], operation_id="create_note", status_code=201, response_model=Note)
async def create_note(note: NewNote, request: Request, user: str = Depends(author)) -> Note:
    """Save a note as the signed-in user."""
    db: NotesDB = request.state.db
    db.notes.append(note.text)
    db.authors[len(db.notes)] = user
    return Note(number=len(db.notes), text=note.text, author=user)


# The routes tagged "notes" as tools too: called in-process, the caller's Authorization forwarded.
mcp.add_routes(app, include_tags=["notes"])
# MCP at /mcp (and its custom route at /mcp/health); the server's lifespan runs inside the host's.
mount(app, "/mcp", mcp)


if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    print(f"MCP endpoint: http://{host}:{port}/mcp   (JSON API: http://{host}:{port}/api/notes)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("LOG_LEVEL", "info"))
