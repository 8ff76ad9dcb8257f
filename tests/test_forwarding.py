"""`forward_with_keepalive`: items waiting in a memory stream go out at once and in order; quiet gets keep-alives."""

from __future__ import annotations

import asyncio

import anyio

from mcp_asgi.concurrency import forward_with_keepalive


async def test_waiting_items_are_delivered_in_order_without_loop_turns() -> None:
    send, receive = anyio.create_memory_object_stream[int](100)
    for number in range(50):
        send.send_nowait(number)
    send.close()
    delivered: list[int] = []
    turns = 0

    def tick() -> None:
        nonlocal turns
        turns += 1

    async def deliver(item: int) -> None:
        delivered.append(item)

    async def keepalive() -> None:
        raise AssertionError("no keep-alive while items wait")

    asyncio.get_running_loop().call_soon(tick)
    await forward_with_keepalive(receive, deliver, keepalive, 5.0)
    assert delivered == list(range(50))
    assert turns == 0  # the loop never ran: no checkpoint per item


async def test_a_quiet_stream_gets_keepalives_then_later_items() -> None:
    send, receive = anyio.create_memory_object_stream[str](10)
    seen: list[str] = []

    async def deliver(item: str) -> None:
        seen.append(item)
        if item == "last":
            send.close()

    async def keepalive() -> None:
        seen.append("ping")
        if seen.count("ping") == 2:
            await send.send("last")

    with anyio.fail_after(5):
        await forward_with_keepalive(receive, deliver, keepalive, 0.05)
    assert seen == ["ping", "ping", "last"]
