"""Workers on one Redis for the tests: apps whose backend opens in the app's own lifespan (its loop)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_asgi.bus import Bus
from mcp_asgi.redis import RedisBackend


def new_backends(url: str, count: int, *, bus: type[Bus] | None = None) -> list[RedisBackend]:
    """`count` backends on one Redis and one prefix (fresh for the test), one per would-be worker."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    return [RedisBackend(url, prefix=prefix, bus=bus() if bus is not None else None) for _ in range(count)]


def with_backend(app: ASGIApp, backend: RedisBackend) -> ASGIApp:
    """`app`, opening `backend` at lifespan startup and closing it at shutdown, on the server's loop.

    Stands in for the server's own backend wiring: a pool belongs to the loop that opened it.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receive_with_backend() -> Any:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await backend.start()
            elif message["type"] == "lifespan.shutdown":
                await backend.close()
            return message

        await app(scope, receive_with_backend, send)

    return wrapped
