"""One contract for every task store, run against the in-memory store and against Redis (a real redis-server).

Each test pins one rule of the `TaskStore` docstrings (mcp_asgi/tasks/store.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.redis import RedisBackend
from mcp_asgi.tasks.redis_store import RedisTaskStore
from mcp_asgi.tasks.store import (
    CANCELLED,
    COMPLETED,
    FAILED,
    INPUT_REQUIRED,
    WORKING,
    InMemoryTaskStore,
    TaskRecord,
)
from tests.redis_server import RedisServer

MakeStore = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """Builds stores of one kind; `same_as=store` gives a second "worker" on the first one's data."""
    import redis.asyncio

    clients: list[Any] = []
    prefix = f"test-{uuid.uuid4().hex[:8]}:"

    async def make(*, same_as: Any = None, **options: Any) -> Any:
        if request.param == "memory":
            # One process has one store: a second "worker" of the in-memory kind is the same object.
            return same_as if same_as is not None else InMemoryTaskStore(**options)
        client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
        clients.append(client)
        if same_as is not None:
            options = {"max_tasks": same_as.max_tasks}
        return RedisTaskStore(client, prefix=prefix, **options)

    yield make
    for client in clients:
        await client.aclose()


def task(task_id: str = "t1", principal: str | None = "user:alice", **fields: Any) -> TaskRecord:
    return TaskRecord(task_id=task_id, principal=principal, **fields)


QUESTION = {"method": "elicitation/create", "params": {"message": "Name?", "requestedSchema": {"type": "object"}}}


async def test_create_then_get_gives_every_field_back_on_another_worker(make_store: MakeStore) -> None:
    store = await make_store()
    other = await make_store(same_as=store)
    record = task(
        status_message="starting",
        ttl_ms=60_000,
        poll_interval_ms=500,
        request={"name": "slow", "arguments": {"n": 1, "list": [], "obj": {}}, "_meta": {"k": "café"}},
    )
    await store.create(record)
    got = await other.get("t1")
    assert got is not None
    assert got.to_dict() == record.to_dict()
    assert got.to_wire()["ttlMs"] == 60_000
    assert await other.get("unknown") is None


async def test_get_hands_out_copies(make_store: MakeStore) -> None:
    store = await make_store()
    record = task(request={"name": "x"})
    await store.create(record)
    record.status = FAILED  # the caller's object is not the stored one
    got = await store.get("t1")
    got.status = COMPLETED
    got.request["name"] = "changed"
    got.issued_keys.add("k")
    again = await store.get("t1")
    assert (again.status, again.request, again.issued_keys) == (WORKING, {"name": "x"}, set())
    changed = await store.set_status("t1", INPUT_REQUIRED)
    changed.status = CANCELLED
    assert (await store.get("t1")).status == INPUT_REQUIRED


async def test_a_task_is_bound_to_the_principal_that_created_it(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task(principal="user:alice"))
    await store.create(task("anon", principal=None))
    assert (await store.get("t1", principal="user:alice")).task_id == "t1"
    for principal in ("user:bob", None, "user:alice "):
        assert await store.get("t1", principal=principal) is None
        assert await store.add_input_responses("t1", {"k": 1}, principal=principal) is None
        assert await store.request_cancel("t1", principal=principal) is None
    assert (await store.get("t1")).cancel_requested is False
    assert (await store.get("anon", principal=None)).task_id == "anon"
    assert await store.get("anon", principal="user:alice") is None


async def test_a_task_past_its_ttl_is_gone_for_every_method(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task(ttl_ms=300))
    await store.create(task("forever", ttl_ms=None))
    assert await store.get("t1") is not None
    await anyio.sleep(0.45)
    assert await store.get("t1") is None
    assert await store.set_status("t1", COMPLETED, result={"content": []}) is None
    assert await store.add_input_requests("t1", {"k": QUESTION}) is None
    assert await store.add_input_responses("t1", {"k": 1}) is None
    assert await store.take_input_responses("t1", ["k"]) == {}
    assert await store.request_cancel("t1") is None
    assert await store.delete("t1") is False
    assert (await store.get("forever")).ttl_ms is None


async def test_ttl_counts_from_creation_and_survives_changes(make_store: MakeStore) -> None:
    store = await make_store()
    # Created 200 ms ago with a 500 ms TTL: 300 ms are left, and changes do not extend them.
    await store.create(task(ttl_ms=500, created_at=time.time() - 0.2))
    await store.add_input_requests("t1", {"k": QUESTION})
    await store.add_input_responses("t1", {"k": {"action": "accept"}})
    await anyio.sleep(0.45)
    assert await store.get("t1") is None
    assert await store.take_input_responses("t1", ["k"]) == {}


async def test_set_status_moves_between_working_and_input_required_then_ends(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task(created_at=time.time() - 5, updated_at=time.time() - 5))
    moved = await store.set_status("t1", INPUT_REQUIRED, message="waiting")
    assert (moved.status, moved.status_message) == (INPUT_REQUIRED, "waiting")
    assert moved.updated_at > time.time() - 2
    back = await store.set_status("t1", WORKING)
    assert (back.status, back.status_message) == (WORKING, None)
    done = await store.set_status("t1", COMPLETED, result={"content": [{"type": "text", "text": "hi"}]})
    assert done.status == COMPLETED and done.terminal
    got = await store.get("t1")
    assert got.result == {"content": [{"type": "text", "text": "hi"}]}
    assert got.to_wire()["result"] == got.result
    with pytest.raises(ValueError):
        await store.set_status("t1", "finished")


@pytest.mark.parametrize("end", [COMPLETED, FAILED, CANCELLED])
async def test_a_terminal_task_never_changes_again(make_store: MakeStore, end: str) -> None:
    store = await make_store()
    await store.create(task())
    error = {"code": -32603, "message": "boom"} if end == FAILED else None
    result = {"content": []} if end == COMPLETED else None
    ended = await store.set_status("t1", end, message="over", result=result, error=error)
    assert (ended.status, ended.result, ended.error) == (end, result, error)
    for status in (WORKING, INPUT_REQUIRED, COMPLETED, FAILED, CANCELLED):
        assert await store.set_status("t1", status, result={"content": ["late"]}) is None
    assert await store.add_input_requests("t1", {"k": QUESTION}) is None
    # tasks/update and tasks/cancel on a terminal task: acknowledged, nothing changes.
    assert (await store.add_input_responses("t1", {"k": 1})).status == end
    cancel = await store.request_cancel("t1")
    assert (cancel.status, cancel.cancel_requested) == (end, False)
    got = await store.get("t1")
    assert (got.status, got.status_message, got.result, got.error) == (end, "over", result, error)
    assert got.input_responses == {} and got.input_requests == {}


async def test_ending_a_task_clears_its_outstanding_input(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task())
    await store.add_input_requests("t1", {"a": QUESTION, "b": QUESTION})
    await store.add_input_responses("t1", {"a": {"action": "accept"}})
    ended = await store.set_status("t1", FAILED, error={"code": -1, "message": "x"})
    assert (ended.input_requests, ended.input_responses) == ({}, {})
    assert ended.issued_keys == {"a", "b"}
    assert await store.take_input_responses("t1", ["a"]) == {}


async def test_input_requests_put_the_task_in_input_required_and_keys_are_never_reused(make_store: MakeStore) -> None:
    store = await make_store()
    other = await make_store(same_as=store)
    await store.create(task())
    waiting = await store.add_input_requests("t1", {"k1": QUESTION})
    assert waiting.status == INPUT_REQUIRED
    assert waiting.to_wire()["inputRequests"] == {"k1": QUESTION}
    assert (await other.get("t1")).input_requests == {"k1": QUESTION}
    await other.add_input_responses("t1", {"k1": {"action": "accept", "content": {"name": "Ada"}}})
    assert await store.take_input_responses("t1", ["k1"]) == {"k1": {"action": "accept", "content": {"name": "Ada"}}}
    # k1 is answered and gone, but was issued: never again in this task (all-or-nothing).
    with pytest.raises(ValueError, match="k1"):
        await store.add_input_requests("t1", {"k2": QUESTION, "k1": QUESTION})
    got = await store.get("t1")
    assert (got.status, got.input_requests, got.issued_keys) == (WORKING, {}, {"k1"})
    # Another task may use the same key.
    await store.create(task("t2"))
    assert (await store.add_input_requests("t2", {"k1": QUESTION})).status == INPUT_REQUIRED


async def test_outstanding_input_requests_are_capped(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task())
    cap = TaskRecord.max_input_requests
    await store.add_input_requests("t1", {f"k{i}": QUESTION for i in range(cap - 1)})
    with pytest.raises(ValueError, match="at most"):
        await store.add_input_requests("t1", {"x": QUESTION, "y": QUESTION})
    got = await store.get("t1")
    assert len(got.input_requests) == cap - 1 and "x" not in got.issued_keys
    assert len((await store.add_input_requests("t1", {"x": QUESTION})).input_requests) == cap


async def test_answers_to_keys_not_outstanding_are_ignored(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task())
    await store.add_input_requests("t1", {"k1": QUESTION})
    got = await store.add_input_responses("t1", {"k1": {"action": "decline"}, "stranger": {"action": "accept"}})
    assert got.input_responses == {"k1": {"action": "decline"}}
    assert got.status == INPUT_REQUIRED  # the runner moves it back, not tasks/update
    assert await store.take_input_responses("t1", ["stranger", "k1"]) == {"k1": {"action": "decline"}}
    assert await store.add_input_responses("t1", {"k1": {"action": "accept"}}) is not None
    assert (await store.get("t1")).input_responses == {}


async def test_taking_answers_returns_to_working_only_when_nothing_is_outstanding(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task())
    await store.add_input_requests("t1", {"a": QUESTION, "b": QUESTION})
    assert await store.take_input_responses("t1", ["a", "b"]) == {}
    await store.add_input_responses("t1", {"a": [1, 2, {}], "b": None})
    assert await store.take_input_responses("t1", ["a"]) == {"a": [1, 2, {}]}
    got = await store.get("t1")
    assert (got.status, set(got.input_requests), got.input_responses) == (INPUT_REQUIRED, {"b"}, {"b": None})
    assert await store.take_input_responses("t1", ["a", "b"]) == {"b": None}
    got = await store.get("t1")
    assert (got.status, got.input_requests, got.input_responses) == (WORKING, {}, {})
    assert await store.take_input_responses("unknown", ["a"]) == {}


async def test_request_cancel_is_idempotent(make_store: MakeStore) -> None:
    store = await make_store()
    other = await make_store(same_as=store)
    await store.create(task())
    first = await store.request_cancel("t1", principal="user:alice")
    second = await other.request_cancel("t1", principal="user:alice")
    assert first.cancel_requested and second.cancel_requested
    assert (second.status, (await store.get("t1")).cancel_requested) == (WORKING, True)
    assert await store.request_cancel("unknown") is None
    assert (await store.set_status("t1", CANCELLED)).status == CANCELLED


async def test_a_full_store_refuses_with_a_503_until_a_task_goes(make_store: MakeStore) -> None:
    store = await make_store(max_tasks=2)
    await store.create(task("a"))
    await store.create(task("b", ttl_ms=200))
    with pytest.raises(MCPError) as raised:
        await store.create(task("c"))
    assert (raised.value.code, raised.value.http_status) == (-32000, 503)
    assert await store.get("c") is None
    await anyio.sleep(0.3)  # b expires: its place is free again
    await store.create(task("c"))
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    await store.create(task("d"))
    assert {(await store.get(name)).task_id for name in ("c", "d")} == {"c", "d"}


async def test_delete_forgets_a_task_and_its_input(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(task())
    await store.add_input_requests("t1", {"k": QUESTION})
    assert await store.delete("t1") is True
    assert await store.get("t1") is None
    await store.create(task())
    # A new task with the same id starts clean: the old issued keys are gone too.
    assert (await store.add_input_requests("t1", {"k": QUESTION})).input_requests == {"k": QUESTION}


# Redis only: the hard cap on lifetime, and outages.


async def test_redis_keeps_a_task_at_most_max_ttl(redis_url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisTaskStore(client, prefix=f"test-{uuid.uuid4().hex[:8]}:", max_ttl=0.3)
        await store.create(task("unlimited", ttl_ms=None))
        await store.create(task("long", ttl_ms=3_600_000))
        assert await store.get("unlimited") is not None
        await store.add_input_requests("unlimited", {"k": QUESTION})
        await anyio.sleep(0.45)
        assert await store.get("unlimited") is None and await store.get("long") is None
        assert await client.keys(store.prefix + "task:*") == []
    finally:
        await client.aclose()


async def test_a_stopped_redis_gives_a_503_within_the_timeout_and_service_resumes(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:8]}:", timeout=1.0)
    await backend.start()
    tasks = backend.tasks
    try:
        await tasks.create(task("before"))
        redis_server.stop()
        for operation in (
            lambda: tasks.create(task("during")),
            lambda: tasks.get("before"),
            lambda: tasks.set_status("before", COMPLETED, result={"content": []}),
            lambda: tasks.add_input_requests("before", {"k": QUESTION}),
            lambda: tasks.add_input_responses("before", {"k": 1}),
            lambda: tasks.take_input_responses("before", ["k"]),
            lambda: tasks.request_cancel("before"),
            lambda: tasks.delete("before"),
        ):
            started = time.monotonic()
            with pytest.raises(MCPError) as raised:
                await operation()
            assert time.monotonic() - started < 1.5
            assert (raised.value.code, raised.value.http_status) == (-32000, 503)
            assert "task store" in raised.value.message
        redis_server.start()
        # Same port, no persistence: the old task is gone, new ones work at once.
        assert await tasks.get("before") is None
        await tasks.create(task("after"))
        assert (await tasks.get("after")).task_id == "after"
    finally:
        await backend.close()


async def test_a_hung_redis_is_a_503_after_the_timeout(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:8]}:", timeout=0.5)
    await backend.start()
    try:
        await backend.tasks.create(task())
        redis_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(MCPError) as raised:
                await backend.tasks.get("t1")
            assert time.monotonic() - started < 1.5
            assert raised.value.http_status == 503 and "0.5 s" in raised.value.message
        finally:
            redis_server.resume()
        assert (await backend.tasks.get("t1")).task_id == "t1"
    finally:
        await backend.close()
