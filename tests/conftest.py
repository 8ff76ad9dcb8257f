from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(app: Any, **options: Any) -> Iterator[str]:
    """Run `app` on a real uvicorn at 127.0.0.1 in a thread; yields the base URL."""
    port = free_port()
    options.setdefault("lifespan", "on")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started; see the log above")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# A real redis-server per run (`redis_url`) or per test (`redis_server`), for the Redis backend's tests.
from tests.redis_server import redis_server, redis_url  # noqa: E402, F401
