"""Requests this server sent a client, waiting for the client's answer (2025 sessions)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, MCPError, RequestId, request

ID_PREFIX = "mcp-asgi-"


def worker_of(request_id: Any) -> str | None:
    """The worker that sent the request `request_id` names (`mcp-asgi-{worker}-{random}`), if any."""
    if not isinstance(request_id, str) or not request_id.startswith(ID_PREFIX):
        return None
    worker, dash, _ = request_id[len(ID_PREFIX) :].partition("-")
    return worker if dash and worker else None


class PendingRequests:
    """Sends server-to-client requests and matches the answers that come back, by id.

    The waiting happens on the worker that asked; each id names that worker (`worker_of`), so
    an answer POSTed to another worker is forwarded there (`transports/session_relay.py`).
    Waiting requests are keyed by (channel, id): an answer counts only on the channel
    (session) that was asked, and ids are random, so nobody answers a request they did not
    receive by guessing its id.
    """

    def __init__(self, *, timeout: float = 300.0, worker_id: str = "local", check_every: float = 1.0) -> None:
        if "-" in worker_id or not worker_id:
            raise ValueError("`worker_id` must be a non-empty name without '-'")
        self.timeout = timeout
        # How often a request with an `alive` probe asks whether its channel still exists.
        self.check_every = check_every
        self.worker_id = worker_id
        self._waiting: dict[tuple[Any, RequestId], asyncio.Future[Any]] = {}

    async def ask(
        self,
        channel: Any,
        method: str,
        params: dict[str, Any],
        send: Callable[[dict[str, Any]], Awaitable[None]],
        *,
        alive: Callable[[], Awaitable[bool]] | None = None,
    ) -> Any:
        """Send `method` with `send` and await the result the client returns on `channel`.

        With `alive`, the wait also ends (with an error) once `alive()` says the channel is
        gone: a session that expired while its client was away, on this worker or another,
        is noticed within `check_every` seconds instead of at the end of `timeout`.
        """
        request_id = f"{ID_PREFIX}{self.worker_id}-{secrets.token_urlsafe(16)}"
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[(channel, request_id)] = answer
        try:
            await send(request(request_id, method, params))
            with anyio.fail_after(self.timeout):
                if alive is None:
                    return await answer
                while True:
                    # asyncio.wait leaves the future alone when it times out (awaiting it would cancel it).
                    done, _ = await asyncio.wait((answer,), timeout=self.check_every)
                    if done:
                        return answer.result()
                    if not await alive():
                        raise MCPError(
                            INVALID_REQUEST,
                            f"The session ended while {method} waited for the client's answer",
                        )
        finally:
            self._waiting.pop((channel, request_id), None)

    def answer(self, channel: Any, message: dict[str, Any]) -> bool:
        """Deliver a client's response; False if nothing was waiting for it."""
        request_id = message.get("id")
        # Only a JSON-RPC id can match one we sent; anything else (a list or an object is not even
        # hashable) answers nothing, and must never fail the transport that received it.
        if isinstance(request_id, bool) or not isinstance(request_id, (str, int)):
            return False
        waiting = self._waiting.get((channel, request_id))
        if waiting is None or waiting.done():
            return False
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            if isinstance(code, bool) or not isinstance(code, int):
                code = INVALID_REQUEST
            waiting.set_exception(MCPError(code, str(error.get("message", "client error")), error.get("data")))
        else:
            waiting.set_result(message.get("result"))
        return True
