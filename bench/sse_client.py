"""The load generator for legacy HTTP+SSE: a closed loop of calls whose results come back on the stream.

    python bench/sse_client.py PORT SECONDS CONCURRENCY

wrk cannot measure this transport: a POST is answered 202 before the call runs and the
result arrives on the `GET /sse` stream, so a client that does not wait for results only
fills the server's queue (and gets 503s). This client does what an MCP client does: it holds
the stream, and each of CONCURRENCY workers POSTs a call on its own keep-alive connection and
waits for that call's result on the stream before sending the next. Prints `RATE <calls/s>`.

It is a Python process driving a server that may be as fast as itself, so it spends as little
as it can per call (uvloop when installed, request bytes built once, the stream read in chunks):
a figure it reports must be the server's limit, not the client's.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import time


async def main(port: int, seconds: float, concurrency: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    path = ""
    while not path:
        line = await reader.readline()
        if line.startswith(b"data:"):
            path = line[5:].strip().decode()
    waiting: dict[str, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()

    def answered(data: bytes) -> None:
        future = waiting.pop(str(json.loads(data).get("id")), None)
        if future is not None and not future.done():
            future.set_result(None)

    async def read_stream() -> None:
        # Whole lines only; chunked encoding's size lines sit between events, never inside a data line.
        pending = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            lines, pending = pending[:cut], pending[cut + 1 :]
            start = lines.find(b"data: {")
            while start >= 0:
                end = lines.find(b"\n", start)
                end = len(lines) if end < 0 else end
                answered(lines[start + 6 : end])
                start = lines.find(b"data: {", end)

    stream = asyncio.create_task(read_stream())
    init = {"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {"protocolVersion": "2024-11-05"}}
    waiting["init"] = loop.create_future()
    post(port, path, init)
    await waiting["init"]
    post(port, path, {"jsonrpc": "2.0", "method": "notifications/initialized"})

    done = 0
    stop = time.monotonic() + seconds

    async def worker(number: int) -> None:
        nonlocal done
        r, w = await asyncio.open_connection("127.0.0.1", port)
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: "
        body = '{"jsonrpc":"2.0","id":"%s","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}'
        sent = 0
        while time.monotonic() < stop:
            request_id = f"{number}-{sent}"
            sent += 1
            data = (body % request_id).encode()
            future = waiting[request_id] = loop.create_future()
            w.write(b"%s%d\r\n\r\n%s" % (head.encode(), len(data), data))
            response = await r.readuntil(b"\r\n\r\n")
            if not response.startswith(b"HTTP/1.1 202"):
                raise SystemExit(f"POST answered {response.splitlines()[0]!r}")
            at = response.lower().find(b"content-length:")
            await r.readexactly(int(response[at + 15 : response.find(b"\r\n", at)]))
            await future
            done += 1
        w.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    print(f"RATE {done / (time.monotonic() - started):.1f}", flush=True)
    stream.cancel()
    writer.close()


def post(port: int, path: str, message: dict) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, json.dumps(message), {"Content-Type": "application/json"})
    status = connection.getresponse().status
    connection.close()
    if status != 202:
        raise SystemExit(f"POST {path} answered {status}")


def run(coroutine: object) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)  # type: ignore[arg-type]
    else:
        uvloop.run(coroutine)  # type: ignore[arg-type]


if __name__ == "__main__":
    run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
