"""HTTP for the token verifiers: a client per event loop, bounded JSON reads, one shared in-flight call per key.

A verifier talks to its authorization server (the JWKS document, the introspection endpoint)
from inside request handling, so every call here has a total deadline, reads at most a fixed
number of bytes, and turns every failure into one `FetchError` the verifier logs and survives.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import anyio
import httpx

T = TypeVar("T")


class FetchError(Exception):
    """The authorization server could not be asked, or its answer was not usable; the text says why."""


class JSONFetcher:
    """Fetches small JSON documents over one lazily created `httpx.AsyncClient`, within a deadline and a size cap."""

    def __init__(self, *, timeout: float, max_bytes: int) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        # An httpx client's connection pool belongs to the loop that first used it; a verifier
        # reused under another loop (a test, a second `asyncio.run`) gets a fresh client there.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            self._loop = loop
        return self._client

    async def json(self, method: str, url: str, **options: Any) -> Any:
        """The decoded JSON body of a 200 answer to `method url`; `FetchError` for anything else."""
        # Identity encoding: the size cap counts the bytes we hold, and a compressed body could
        # inflate far past it in one chunk.
        headers = {"Accept": "application/json", "Accept-Encoding": "identity", **options.pop("headers", {})}
        try:
            # httpx's timeout bounds each read; this bounds the whole exchange (a server dripping bytes).
            with anyio.fail_after(self.timeout):
                async with self._http().stream(method, url, headers=headers, **options) as response:
                    if response.status_code != 200:
                        raise FetchError(f"HTTP {response.status_code} from {url}")
                    body = await self._read(response, url)
        except TimeoutError:
            raise FetchError(f"no answer from {url} within {self.timeout:g} s") from None
        except httpx.HTTPError as error:
            raise FetchError(f"{url} unreachable: {type(error).__name__}: {error}") from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise FetchError(f"{url} answered something that is not JSON") from None

    async def _read(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"{url} answered {declared} bytes, more than the {self.max_bytes} allowed")
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(f"{url} answered more than the {self.max_bytes} bytes allowed")
        return bytes(body)

    async def aclose(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()


class SharedFlight(Generic[T]):
    """Runs one call per key at a time: concurrent callers with the same key await the same task.

    The task is shielded, so a caller that is cancelled (its client went away) does not cancel
    the work the others are waiting for.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    def running(self, key: Hashable) -> bool:
        """Whether a call for `key` is in flight on the current loop."""
        task = self._tasks.get(key)
        return task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """The result of the call in flight for `key`, or of `call()` started now."""
        loop = asyncio.get_running_loop()
        task = self._tasks.get(key)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(_awaited(call))
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody awaited is not reported as "never retrieved"


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    return await call()
