"""The load generator for legacy HTTP+SSE: a closed loop of calls whose results come back on the stream.

    python bench/sse_client.py PORT SECONDS CONCURRENCY

wrk cannot measure this transport: a POST is answered 202 before the call runs and the
result arrives on the `GET /sse` stream, so a client that does not wait for results only
fills the server's queue (and gets 503s). This client does what an MCP client does: it holds
the stream, and each of CONCURRENCY workers POSTs a call on its own keep-alive connection and
waits for that call's result on the stream before sending the next. Prints `RATE <calls/s>`.
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

    async def read_stream() -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data:") and len(line) > 8:
                answered = waiting.pop(str(json.loads(line[5:]).get("id")), None)
                if answered is not None and not answered.done():
                    answered.set_result(None)

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
        sent = 0
        while time.monotonic() < stop:
            request_id = f"{number}-{sent}"
            sent += 1
            body = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": "x"}},
                }
            ).encode()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            answered = waiting[request_id] = loop.create_future()
            w.write(head.encode() + body)
            response = await r.readuntil(b"\r\n\r\n")
            if not response.startswith(b"HTTP/1.1 202"):
                raise SystemExit(f"POST answered {response.splitlines()[0]!r}")
            length = next(
                int(h.split(b":")[1]) for h in response.split(b"\r\n") if h.lower().startswith(b"content-length")
            )
            await r.readexactly(length)
            await answered
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


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
