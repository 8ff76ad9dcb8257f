"""2025-11-25 SSE resumption across two real uvicorn workers that share one Redis (sessions and events)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from mcp_asgi.bus import LocalBus
from mcp_asgi.redis import RedisBackend
from mcp_asgi.redis_events import RedisEventStore
from tests.conftest import serve
from tests.http_helpers import ACCEPT, initialize
from tests.redis_workers import new_backends, with_backend
from tests.test_sse_resume import build_server, call, messages, parse_events


@contextlib.contextmanager
def two_workers(url: str) -> Iterator[tuple[str, str]]:
    # Each worker has its own server object and backend, as separate processes would.
    apps = [
        with_backend(build_server().http_app(session_store=backend.sessions, event_store=backend.events), backend)
        for backend in new_backends(url, 2, bus=LocalBus)
    ]
    with serve(apps[0]) as one, serve(apps[1]) as two:
        yield one, two


def test_the_redis_backend_records_events_in_redis_by_default() -> None:
    assert isinstance(RedisBackend().events, RedisEventStore)


async def test_a_stream_cut_on_one_worker_resumes_live_on_the_other(redis_url: str) -> None:
    with two_workers(redis_url) as (url_one, url_two):
        async with httpx.AsyncClient(timeout=10) as http:
            session_id = await initialize(http, f"{url_one}/mcp")
            headers = {"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
            # `poll` closes its stream after the first progress event, then goes on on worker one.
            response = await http.post(f"{url_one}/mcp", json=call(7, "poll", {"n": 3}, token="p"), headers=headers)
            cut = parse_events(response.text)
            assert [m["params"]["progress"] for m in messages(cut)] == [1]
            # Worker two tails the stream worker one is still writing, until its response.
            resume = {**headers, "accept": "text/event-stream", "last-event-id": cut[-1]["id"]}
            resumed = await http.get(f"{url_two}/mcp", headers=resume)
            assert resumed.status_code == 200
            rest = [event for event in parse_events(resumed.text) if "data" in event]
            stream, _, last = cut[-1]["id"].rpartition(":")
            assert [event["id"] for event in rest] == [f"{stream}:{int(last) + n}" for n in (1, 2, 3)]
            received = messages(rest)
            assert [m["params"]["progress"] for m in received[:-1]] == [2, 3]
            assert received[-1]["result"]["content"][0]["text"] == "polled 3"
            # Any worker replays it again from the priming event, now that it has ended.
            again = await http.get(f"{url_one}/mcp", headers={**resume, "last-event-id": cut[0]["id"]})
            assert len(messages(parse_events(again.text))) == 4


async def test_an_unknown_or_foreign_event_id_is_a_400_on_every_worker(redis_url: str) -> None:
    with two_workers(redis_url) as (url_one, url_two):
        async with httpx.AsyncClient(timeout=10) as http:
            mine = await initialize(http, f"{url_one}/mcp")
            other = await initialize(http, f"{url_two}/mcp")
            headers = {"accept": ACCEPT, "mcp-session-id": mine, "mcp-protocol-version": "2025-11-25"}
            response = await http.post(f"{url_one}/mcp", json=call(1, "steps", {"n": 1}, token="t"), headers=headers)
            event_id = parse_events(response.text)[0]["id"]
            for url in (url_one, url_two):
                foreign = {
                    **headers,
                    "mcp-session-id": other,
                    "accept": "text/event-stream",
                    "last-event-id": event_id,
                }
                assert (await http.get(f"{url}/mcp", headers=foreign)).status_code == 400
