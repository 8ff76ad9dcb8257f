"""Raw HTTP helpers for driving the MCP endpoint in-process with httpx."""

from __future__ import annotations

import json
from typing import Any

import httpx

ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"


def modern_meta(**extra: Any) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "tests", "version": "0"},
    }
    meta.update(extra)
    return meta


def modern_request(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> tuple[dict, dict]:
    """A well-formed 2026-07-28 request body and its headers."""
    params = dict(params or {})
    params["_meta"] = modern_meta(**params.get("_meta", {}))
    headers = {"accept": ACCEPT, "mcp-protocol-version": MODERN, "mcp-method": method}
    if method in ("tools/call", "prompts/get"):
        headers["mcp-name"] = params["name"]
    elif method == "resources/read":
        headers["mcp-name"] = params["uri"]
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}, headers


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def initialize(client: httpx.AsyncClient, path: str = "/mcp", version: str = "2025-11-25") -> str:
    response = await client.post(
        path,
        json={
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        },
        headers={"accept": ACCEPT},
    )
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    await client.post(
        path,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={"accept": ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": version},
    )
    return session_id


def sse_messages(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:].strip()) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]
