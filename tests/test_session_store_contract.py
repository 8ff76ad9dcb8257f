"""One contract for every session store, run against the in-memory store and against Redis (a real redis-server)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from mcp_asgi import InMemorySessionStore, SessionRecord
from mcp_asgi.protocol.jsonrpc import MCPError
from mcp_asgi.redis import RedisSessionStore

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
            return same_as if same_as is not None else InMemorySessionStore(**options)
        client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"), decode_responses=True)
        clients.append(client)
        if same_as is not None:
            options = {"idle_timeout": same_as.idle_timeout, "max_sessions": same_as.max_sessions}
        return RedisSessionStore(client, prefix=prefix, **options)

    yield make
    for client in clients:
        await client.aclose()


def record(session_id: str = "s1", principal: str | None = "user:alice") -> SessionRecord:
    return SessionRecord(session_id=session_id, principal=principal)


async def test_create_then_get_gives_the_fields_back(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(
        SessionRecord(
            session_id="s1",
            principal="user:alice",
            protocol_version="2025-06-18",
            client_capabilities={"elicitation": {"form": {}}},
            client_info={"name": "café", "version": "1"},
            log_level="info",
        )
    )
    got = await store.get("s1")
    assert (got.session_id, got.principal, got.protocol_version) == ("s1", "user:alice", "2025-06-18")
    assert got.client_capabilities == {"elicitation": {"form": {}}}
    assert got.client_info == {"name": "café", "version": "1"}
    assert (got.log_level, got.initialized, got.subscriptions) == ("info", False, set())
    assert await store.get("unknown") is None


async def test_get_hands_out_a_copy(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(record())
    got = await store.get("s1")
    got.log_level = "debug"
    got.subscriptions.add("data://x")
    again = await store.get("s1")
    assert again.log_level is None and again.subscriptions == set()
    assert not await store.subscribed("s1", "data://x")


async def test_update_sets_only_the_given_fields(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(record())
    assert await store.update("s1", log_level="warning", initialized=True) is True
    assert await store.update("s1", client_info={"name": "n"}) is True
    got = await store.get("s1")
    assert (got.log_level, got.initialized, got.client_info, got.principal) == (
        "warning",
        True,
        {"name": "n"},
        "user:alice",
    )
    assert await store.update("unknown", log_level="debug") is False
    assert await store.get("unknown") is None  # an update never creates a session
    with pytest.raises(TypeError, match="principal"):
        await store.update("s1", principal="user:mallory")


async def test_subscribe_and_unsubscribe(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(record())
    assert await store.subscribe("s1", "data://a") is True
    assert await store.subscribe("s1", "data://a") is False  # already there
    assert await store.subscribe("s1", "data://b") is True
    assert (await store.get("s1")).subscriptions == {"data://a", "data://b"}
    assert await store.subscribed("s1", "data://a") and not await store.subscribed("s1", "data://c")
    assert await store.unsubscribe("s1", "data://a") is True
    assert await store.unsubscribe("s1", "data://a") is False
    assert (await store.get("s1")).subscriptions == {"data://b"}
    assert await store.subscribe("unknown", "data://a") is False
    assert not await store.subscribed("unknown", "data://a")


async def test_subscriptions_are_capped_in_number_and_uri_length(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SessionRecord, "max_subscriptions", 2)
    store = await make_store()
    await store.create(record())
    await store.subscribe("s1", "data://a")
    await store.subscribe("s1", "data://b")
    assert await store.subscribe("s1", "data://a") is False  # held already: no new subscription, no error
    with pytest.raises(MCPError) as full:
        await store.subscribe("s1", "data://c")
    assert full.value.code == -32602 and "2 subscriptions" in full.value.message
    with pytest.raises(MCPError) as long:
        await store.subscribe("s1", "data://" + "u" * SessionRecord.max_uri_length)
    assert long.value.code == -32602 and "characters" in long.value.message
    assert (await store.get("s1")).subscriptions == {"data://a", "data://b"}


async def test_delete_ends_the_session_and_its_subscriptions(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(record())
    await store.subscribe("s1", "data://a")
    assert await store.delete("s1") is True
    assert await store.delete("s1") is False
    assert await store.get("s1") is None
    assert not await store.subscribed("s1", "data://a")
    assert await store.update("s1", log_level="debug") is False


async def test_the_session_cap_refuses_with_503_and_frees_on_delete(make_store: MakeStore) -> None:
    store = await make_store(max_sessions=2)
    await store.create(record("a"))
    await store.create(record("b"))
    with pytest.raises(MCPError) as refused:
        await store.create(record("c"))
    assert (refused.value.code, refused.value.http_status) == (-32000, 503)
    assert (await store.get("a")).session_id == "a"  # existing sessions are never evicted
    await store.delete("a")
    await store.create(record("c"))
    assert (await store.get("c")).session_id == "c"


async def test_another_principal_sees_nothing(make_store: MakeStore) -> None:
    store = await make_store()
    await store.create(record("s1", "user:alice"))
    await store.create(record("anon", None))
    assert await store.get("s1", principal="user:bob") is None
    assert await store.get("s1", principal=None) is None
    assert (await store.get("s1", principal="user:alice")).principal == "user:alice"
    assert await store.get("anon", principal="user:alice") is None
    assert (await store.get("anon", principal=None)).principal is None


async def test_idle_sessions_expire_and_stop_counting_against_the_cap(make_store: MakeStore) -> None:
    store = await make_store(idle_timeout=0.3, max_sessions=1)
    await store.create(record("old"))
    await store.subscribe("old", "data://a")
    await anyio.sleep(0.5)
    assert await store.get("old") is None
    assert not await store.subscribed("old", "data://a")
    await store.create(record("new"))  # the expired one no longer fills the only place
    assert (await store.get("new")).session_id == "new"


async def test_only_the_owners_reads_keep_a_session_alive(make_store: MakeStore) -> None:
    # Reads 0.6 s apart with a 1 s idle timeout: the owner's keep the session; a stranger's do not.
    store = await make_store(idle_timeout=1.0)
    await store.create(record("kept"))
    await store.create(record("left"))
    await anyio.sleep(0.6)
    assert await store.get("kept", principal="user:alice") is not None
    assert await store.get("left", principal="user:bob") is None
    await anyio.sleep(0.6)
    assert await store.get("kept", principal="user:alice") is not None
    assert await store.get("left", principal="user:alice") is None  # 1.2 s without its owner: expired


async def test_alive_says_whether_a_session_exists_and_is_not_activity(make_store: MakeStore) -> None:
    store = await make_store(idle_timeout=1.0)
    await store.create(record("asked"))
    await store.create(record("deleted"))
    assert await store.alive("asked") and await store.alive("deleted")
    assert not await store.alive("never")
    await store.delete("deleted")
    assert not await store.alive("deleted")
    # Asked every 0.3 s for 1.2 s with a 1 s idle timeout: asking kept nothing alive.
    for _ in range(4):
        await anyio.sleep(0.3)
        await store.alive("asked")
    assert not await store.alive("asked")
    assert await store.get("asked") is None


async def test_changes_from_two_workers_never_overwrite_each_other(make_store: MakeStore) -> None:
    first = await make_store()
    second = await make_store(same_as=first)
    await first.create(record())
    async with anyio.create_task_group() as group:
        for n in range(10):
            group.start_soon(first.subscribe, "s1", f"data://first/{n}")
            group.start_soon(second.subscribe, "s1", f"data://second/{n}")
        group.start_soon(lambda: first.update("s1", log_level="error"))
        group.start_soon(lambda: second.update("s1", initialized=True))
        group.start_soon(lambda: second.update("s1", client_info={"name": "second"}))
    for store in (first, second):
        got = await store.get("s1")
        assert (got.log_level, got.initialized, got.client_info) == ("error", True, {"name": "second"})
        assert got.subscriptions == {f"data://{w}/{n}" for w in ("first", "second") for n in range(10)}
