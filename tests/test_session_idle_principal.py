"""A stolen session id does not keep the session alive: only its creator's requests count as activity."""

from __future__ import annotations

import anyio
import httpx

from mcp_asgi import InMemorySessionStore, MCPServer, SessionRecord
from tests.http_helpers import ACCEPT, client_for


async def test_the_store_hides_and_does_not_touch_another_principals_session() -> None:
    store = InMemorySessionStore(idle_timeout=60)
    record = SessionRecord(session_id="s1", principal="user:alice")
    await store.create(record)
    stored = store._records["s1"]
    stored.last_active -= 30
    before = stored.last_active
    assert await store.get("s1", principal="user:bob") is None
    assert await store.get("s1", principal=None) is None
    assert stored.last_active == before  # the stranger's reads were not activity
    assert (await store.get("s1", principal="user:alice")).principal == "user:alice"
    assert stored.last_active > before
    assert (await store.get("s1")).session_id == "s1"  # no principal given: the transport-free read


async def test_a_strangers_requests_do_not_keep_a_session_from_expiring() -> None:
    store = InMemorySessionStore(idle_timeout=0.5)
    app = MCPServer("idle").http_app(session_store=store)
    alice = {"authorization": "Bearer alice"}
    bob = {"authorization": "Bearer bob"}
    async with client_for(app) as http:
        init = await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
            headers={"accept": ACCEPT, **alice},
        )
        session = {"accept": ACCEPT, "mcp-session-id": init.headers["mcp-session-id"]}
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        assert (await http.post("/mcp", json=ping, headers={**session, **alice})).status_code == 200
        with anyio.move_on_after(0.8):  # longer than the idle timeout, Bob never pausing
            while True:
                stranger: httpx.Response = await http.post("/mcp", json=ping, headers={**session, **bob})
                assert stranger.status_code == 404
                await anyio.sleep(0.05)
        expired = await http.post("/mcp", json=ping, headers={**session, **alice})
    assert expired.status_code == 404
