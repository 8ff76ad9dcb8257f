"""The tasks extension end to end on a real uvicorn, 2026-07-28: create, poll, answer, cancel, who may see."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import serve
from tests.http_helpers import ACCEPT, initialize, sse_messages
from tests.tasks_helpers import TASKS, Probe, RawClient, build

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def probe():
    return Probe()


@pytest.fixture(scope="module")
def url(probe):
    with serve(build(probe).http_app()) as base:
        yield f"{base}/mcp"


async def test_a_declaring_client_gets_a_task_and_polls_it_to_its_result(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        created = await client.call("compute", {"seconds": 0.2, "label": "sum"})
        assert created["resultType"] == "task"
        assert created["status"] == "working"
        assert ISO.match(created["createdAt"]) and ISO.match(created["lastUpdatedAt"])
        assert created["ttlMs"] == 3_600_000 and created["pollIntervalMs"] == 1000
        assert not {"result", "error", "inputRequests", "requestState", "task"} & set(created)
        # Durable before the answer: the very next tasks/get finds it.
        working = await client.result("tasks/get", {"taskId": created["taskId"]})
        assert working["resultType"] == "complete" and working["status"] == "working"
        assert "result" not in working
        done = await client.wait_for(created["taskId"], "completed")
        assert done["result"]["content"] == [{"type": "text", "text": "sum after 0.2s"}]


async def test_the_result_waits_for_a_client_that_disconnected(url):
    async with httpx.AsyncClient() as http:
        task_id = (await RawClient(http, url).call("compute", {"seconds": 0.1, "label": "later"}))["taskId"]
    async with httpx.AsyncClient() as fresh:
        done = await RawClient(fresh, url).wait_for(task_id, "completed")
    assert done["result"]["content"][0]["text"] == "later after 0.1s"


async def test_errors_of_the_tool_complete_and_protocol_errors_fail(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        tool_error = await client.wait_for((await client.call("tool_error"))["taskId"], "completed", "failed")
        assert tool_error["status"] == "completed"
        assert tool_error["result"] == {"content": [{"type": "text", "text": "it went wrong"}], "isError": True}
        failed = await client.wait_for((await client.call("protocol_error"))["taskId"], "completed", "failed")
        assert failed["status"] == "failed" and "result" not in failed
        assert failed["error"] == {"code": -32001, "message": "a protocol failure", "data": {"why": "testing"}}
        assert failed["statusMessage"] == "Tool execution failed: a protocol failure"


async def test_elicitation_round_trip_through_input_required_and_tasks_update(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        task_id = (await client.call("ask_name"))["taskId"]
        waiting = await client.wait_for(task_id, "input_required")
        request = waiting["inputRequests"]["name"]
        assert request["method"] == "elicitation/create"
        assert request["params"]["message"] == "Your name?"
        ack = await client.result(
            "tasks/update",
            {"taskId": task_id, "inputResponses": {"name": {"action": "accept", "content": {"name": "Ada"}}}},
        )
        assert ack == {"resultType": "complete", "_meta": ack["_meta"]}
        done = await client.wait_for(task_id, "completed")
        assert done["result"]["content"][0]["text"] == "Hello, Ada!"
        # Answering again, or a key never asked, is ignored on a finished task: still an empty ack.
        again = await client.result("tasks/update", {"taskId": task_id, "inputResponses": {"other": {}}})
        assert again["resultType"] == "complete" and "status" not in again


async def test_cancel_stops_the_running_tool(url, probe):
    probe.started.clear()
    probe.cancelled.clear()
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        task_id = (await client.call("blocker"))["taskId"]
        assert probe.started.wait(5)
        ack = await client.result("tasks/cancel", {"taskId": task_id})
        assert ack["resultType"] == "complete" and not {"taskId", "status"} & set(ack)
        cancelled = await client.wait_for(task_id, "cancelled", "completed", "failed")
        assert cancelled["status"] == "cancelled"
        assert probe.cancelled.wait(5), "the tool's code was not cancelled"
        # Idempotent on a terminal task.
        assert (await client.result("tasks/cancel", {"taskId": task_id}))["resultType"] == "complete"


async def test_progress_becomes_the_status_message_and_logs_are_not_sent(url, probe):
    probe.started.clear()
    probe.release.clear()
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        task_id = (await client.call("with_progress"))["taskId"]
        assert probe.started.wait(5)
        working = await client.result("tasks/get", {"taskId": task_id})
        assert working["status"] == "working" and working["statusMessage"] == "halfway there"
        probe.release.set()
        assert (await client.wait_for(task_id, "completed"))["result"]["content"][0]["text"] == "finished"


async def test_a_task_belongs_to_the_principal_that_created_it(url):
    async with httpx.AsyncClient() as http:
        owner = RawClient(http, url, authorization="Bearer alice")
        stranger = RawClient(http, url, authorization="Bearer mallory")
        anonymous = RawClient(http, url)
        task_id = (await owner.call("ask_name"))["taskId"]
        await owner.wait_for(task_id, "input_required")
        for client in (stranger, anonymous):
            for method, params in (
                ("tasks/get", {}),
                ("tasks/update", {"inputResponses": {"name": {"action": "accept", "content": {"name": "X"}}}}),
                ("tasks/cancel", {}),
            ):
                reply = await client.rpc(method, {"taskId": task_id, **params})
                assert reply["error"]["code"] == -32602, (method, reply)
        # Nothing the others sent reached the task.
        task = await owner.result("tasks/get", {"taskId": task_id})
        assert task["status"] == "input_required" and "name" in task["inputRequests"]
        await owner.result("tasks/cancel", {"taskId": task_id})
        assert (await owner.wait_for(task_id, "cancelled"))["status"] == "cancelled"


async def test_unknown_tasks_and_bad_params_are_invalid_params(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        for method in ("tasks/get", "tasks/cancel"):
            reply = await client.rpc(method, {"taskId": "no-such-task"})
            assert reply["error"]["code"] == -32602
        reply = await client.rpc("tasks/update", {"taskId": "no-such-task", "inputResponses": {}})
        assert reply["error"]["code"] == -32602
        task_id = (await client.call("compute"))["taskId"]
        reply = await client.rpc("tasks/update", {"taskId": task_id, "inputResponses": ["not", "an", "object"]})
        assert reply["error"]["code"] == -32602 and "inputResponses" in reply["error"]["message"]


async def test_clients_that_did_not_declare_the_extension(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url, declare=False)
        for method, extra in (("tasks/get", {}), ("tasks/update", {"inputResponses": {}}), ("tasks/cancel", {})):
            response = await client.send(method, {"taskId": "whatever", **extra})
            error = response.json()["error"]
            assert error["code"] == -32021
            assert error["data"] == {"requiredCapabilities": {"extensions": {TASKS: {}}}}
        blocking = await client.call("compute", {"seconds": 0, "label": "now"})
        assert blocking["resultType"] == "complete" and "taskId" not in blocking
        assert blocking["content"][0]["text"] == "now after 0s"
        required = await client.rpc("tools/call", {"name": "only_task", "arguments": {}})
        assert required["error"]["code"] == -32021
        assert required["error"]["data"]["requiredCapabilities"]["extensions"] == {TASKS: {}}
        # A task tool never turns a declaring client's plain tool into a task.
        plain = await RawClient(http, url).call("plain")
        assert plain["resultType"] == "complete" and plain["content"][0]["text"] == "plain"


async def test_the_routing_header_must_name_the_task(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        task_id = (await client.call("compute"))["taskId"]
        body, headers = client.message("tasks/get", {"taskId": task_id})
        headers["mcp-name"] = "another-task"
        response = await http.post(url, json=body, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == -32020
        del headers["mcp-name"]
        response = await http.post(url, json=body, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == -32020


async def test_discover_advertises_the_extension_and_removed_methods_are_unknown(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        discovered = await client.result("server/discover", {})
        assert discovered["capabilities"]["extensions"] == {TASKS: {}}
        assert "tasks" not in discovered["capabilities"]
        for method in ("tasks/result", "tasks/list"):
            reply = await client.rpc(method, {"taskId": "x"})
            assert reply["error"]["code"] == -32601


async def test_a_manual_tool_asks_in_the_request_then_becomes_a_task(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        first = await client.call("maybe_task", {"big": True})
        assert first["resultType"] == "input_required" and "taskId" not in first
        assert list(first["inputRequests"]) == ["who"]
        answer = {"who": {"action": "accept", "content": {"name": "Kim"}}}
        created = await client.result(
            "tools/call",
            {
                "name": "maybe_task",
                "arguments": {"big": True},
                "inputResponses": answer,
                "requestState": first["requestState"],
            },
        )
        assert created["resultType"] == "task" and "requestState" not in created
        done = await client.wait_for(created["taskId"], "completed")
        # The task ran the function again with the answer given in the request.
        assert done["result"]["content"][0]["text"] == "Kim: task=True, task_id=True"
        # A small job of a declaring client: the function did not switch, the answer is blocking.
        small = await client.result("tools/call", {"name": "maybe_task", "arguments": {}, "inputResponses": answer})
        assert small["resultType"] == "complete" and small["content"][0]["text"] == "Kim: task=False, task_id=False"
        blocking = RawClient(http, url, declare=False)
        body = {"name": "maybe_task", "arguments": {"big": True}, "inputResponses": answer}
        reply = await blocking.rpc("tools/call", body)
        assert reply["result"]["resultType"] == "complete"
        assert reply["result"]["content"][0]["text"] == "Kim: task=False, task_id=False"


async def test_2025_sessions_do_not_have_the_task_methods(url):
    async with httpx.AsyncClient() as http:
        session = await initialize(http, url)
        headers = {"accept": ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
        for method in ("tasks/get", "tasks/update", "tasks/cancel"):
            body = {"jsonrpc": "2.0", "id": 3, "method": method, "params": {"taskId": "x", "inputResponses": {}}}
            reply = sse_or_json(await http.post(url, json=body, headers=headers))
            assert reply["error"]["code"] == -32601, (method, reply)
        body = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "only_task", "arguments": {}}}
        reply = sse_or_json(await http.post(url, json=body, headers=headers))
        assert reply["result"]["content"][0]["text"] == "ran as a task" and "resultType" not in reply["result"]


def sse_or_json(response: httpx.Response) -> dict:
    if response.headers["content-type"].startswith("text/event-stream"):
        return sse_messages(response.text)[-1]
    return response.json()


async def test_hostile_task_ids_and_input_responses_get_client_errors(url):
    async with httpx.AsyncClient() as http:
        client = RawClient(http, url)
        # A taskId that is not a string can never equal the Mcp-Name header: refused before any lookup.
        for task_id in (123, None, {"nested": {"id": "x"}}, ["x"]):
            body, headers = client.message("tasks/get", {"taskId": task_id})
            response = await http.post(url, json=body, headers=headers)
            assert response.status_code == 400 and response.json()["error"]["code"] == -32020
        body, headers = client.message("tasks/get", {})
        response = await http.post(url, json=body, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == -32020
        # Even a header spelling the number ("123") does not match a taskId that is not a string.
        body, headers = client.message("tasks/get", {"taskId": 123})
        headers["mcp-name"] = "123"
        response = await http.post(url, json=body, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == -32020
        # A long id is just an unknown task.
        reply = await client.rpc("tasks/get", {"taskId": "t" * 4096})
        assert reply["error"]["code"] == -32602
        task_id = (await client.call("compute", {"seconds": 0.5}))["taskId"]
        for responses in (None, "text", 42, [{"k": {}}]):
            reply = await client.rpc("tasks/update", {"taskId": task_id, "inputResponses": responses})
            assert reply["error"]["code"] == -32602
        # Answers to keys the task never issued are ignored, however many: nothing is kept.
        flood = {f"key{i}": {"action": "accept", "content": {"x": "y" * 100}} for i in range(5000)}
        assert await client.result("tasks/update", {"taskId": task_id, "inputResponses": flood}) == {
            "resultType": "complete",
            "_meta": (await client.result("tasks/get", {"taskId": task_id}))["_meta"],
        }
        done = await client.wait_for(task_id, "completed")
        assert "inputRequests" not in done
        for task_ids in ("one", [1, 2], [["nested"]], [f"t{i}" for i in range(101)]):
            body, headers = client.message("subscriptions/listen", {"notifications": {"taskIds": task_ids}})
            reply = (await http.post(url, json=body, headers=headers, timeout=5)).json()
            assert reply["error"]["code"] == -32602
