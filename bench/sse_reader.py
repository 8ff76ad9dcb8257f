"""The client side of a legacy HTTP+SSE session for the benchmark: holds the stream, counts the results.

    python bench/sse_reader.py PORT

Opens `GET /sse`, initializes the session through its endpoint, prints `URL <path>` (where wrk
POSTs the calls), then counts the results the stream delivers until it reads a line on stdin,
and prints `COUNT <n>`. Results are counted by their `"result"` key, without decoding each event,
so the reader costs the load generator's core as little as possible.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys

MARK = b'"result"'


async def main(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /sse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    path = ""
    while not path:
        line = await reader.readline()
        if line.startswith(b"data:"):
            path = line[5:].strip().decode()
    post(port, path, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2024-11-05"}})
    while MARK not in await reader.readline():
        pass
    post(port, path, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    print(f"URL {path}", flush=True)

    count = 0
    tail = b""

    async def read() -> None:
        nonlocal count, tail
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            data = tail + chunk
            count += data.count(MARK)
            tail = data[-(len(MARK) - 1) :]  # a mark split across two reads is counted once, in the next

    task = asyncio.create_task(read())
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    task.cancel()
    print(f"COUNT {count}", flush=True)
    writer.close()


def post(port: int, path: str, message: dict) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, json.dumps(message), {"Content-Type": "application/json"})
    status = connection.getresponse().status
    connection.close()
    if status != 202:
        raise SystemExit(f"POST {path} answered {status}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
