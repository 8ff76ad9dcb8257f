"""What the Redis stores share: redis-py imported lazily, Lua scripts on a client bound late, every call bounded.

Both `RedisSessionStore` and `RedisEventStore` do each operation as one Lua script (one round
trip, atomic across workers) on the backend's one connection pool, and turn any failure to
reach Redis into the 503 `MCPError` of `bus.backend_unavailable`, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from mcp_asgi.bus import backend_unavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("mcp_asgi")

# Every request of a 2025 session on Redis passes through `_guarded`: asyncio's own timeout is a
# timer handle, an anyio cancel scope costs several times more (docs/design.md, "One concurrency
# library"). Python 3.10 has no asyncio.timeout.
_ASYNCIO_TIMEOUT = sys.version_info >= (3, 11)


def import_redis() -> Any:
    """redis-py, imported on first use so that `import mcp_asgi` never imports it."""
    try:
        import redis.asyncio
        import redis.asyncio.retry
        import redis.backoff
        import redis.exceptions
    except ImportError as exc:  # pragma: no cover - the test extras install redis
        raise ImportError("the Redis backend needs redis-py: pip install 'mcp-asgi[redis]'") from exc
    return redis


class RedisScripted:
    """A store whose operations are Lua scripts on a redis-py client it is bound to later."""

    # What the 503 error and the log name ("session store (Redis)"), and the scripts by name.
    what: ClassVar[str] = "store (Redis)"
    sources: ClassVar[dict[str, str]] = {}
    timeout: float

    def _unbound(self) -> None:
        self._client: Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._errors: tuple[type[BaseException], ...] = (OSError,)
        self._bug_errors: tuple[type[BaseException], ...] = ()
        # Our own deadline, or redis-py's socket timeout when it fires first (on Python 3.10 neither
        # is the builtin TimeoutError's subclass of the other): both mean Redis did not answer.
        self._timeouts: tuple[type[BaseException], ...] = (TimeoutError, asyncio.TimeoutError)

    def bind(self, client: Redis | None) -> None:
        """Use `client` (a redis-py asyncio client) from now on; None unbinds (the backend closed)."""
        self._client = client
        if client is None:
            return
        redis = import_redis()
        self._errors = (redis.exceptions.RedisError, OSError)
        self._bug_errors = (redis.exceptions.ResponseError,)
        self._timeouts = (TimeoutError, asyncio.TimeoutError, redis.exceptions.TimeoutError)
        # EVALSHA, loading the script again by itself after Redis restarted with an empty cache.
        self._scripts = {name: client.register_script(source) for name, source in self.sources.items()}

    async def _guarded(self, name: str, call: Callable[[Redis], Awaitable[Any]]) -> Any:
        """`call(client)` awaited within the timeout; any failure to reach Redis becomes the 503 error."""
        client = self._client
        if client is None:
            raise RuntimeError(
                f"{type(self).__name__} is not connected: start its RedisBackend (or bind a client) first"
            )
        try:
            if _ASYNCIO_TIMEOUT:
                async with asyncio.timeout(self.timeout):  # type: ignore[attr-defined]
                    return await call(client)
            with anyio.fail_after(self.timeout):
                return await call(client)
        except self._timeouts:
            raise backend_unavailable(self.what, f"no answer within {self.timeout:g} s") from None
        except self._errors as error:
            if isinstance(error, self._bug_errors):  # Redis answered, and refused: a bug to look at
                logger.warning("Redis %s call %s failed: %r", self.what, name, error)
            raise backend_unavailable(self.what, type(error).__name__) from error
