"""examples/litestar_app and examples/quart_app served by uvicorn, driven by the official client."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mcp import Client

from tests.fixtures.hosts import Served, uvicorn_app

MODES = ["legacy", "2026-07-28"]
ACCEPT = {"accept": "application/json, text/event-stream"}


@dataclass
class Example:
    name: str
    tools: set[str]
    host_value: tuple[str, Any]  # (host_info key, what the host's data says)
    route: str
    route_body: dict[str, Any]
    data_tool: tuple[str, dict[str, Any], Any]  # (tool, arguments, structured result)
    lifespan_line: str

    @property
    def target(self) -> str:
        return f"examples.{self.name}.app:app"


EXAMPLES = {
    "litestar_app": Example(
        "litestar_app",
        {"host_info", "stock", "sell"},
        ("shop", "Corner Shop"),
        "/api/stock",
        {"shop": "Corner Shop", "stock": {"apples": 12, "pears": 5}},
        ("stock", {}, {"apples": 12, "pears": 5}),
        "shop: MCP lifespan",
    ),
    "quart_app": Example(
        "quart_app",
        {"host_info", "setting"},
        ("station", "Ostend Pier"),
        "/api/station",
        {"station_name": "Ostend Pier", "station_units": "metric", "station_sensors": ["wind", "temperature"]},
        ("setting", {"name": "STATION_SENSORS"}, {"result": ["wind", "temperature"]}),
        "station: MCP lifespan",
    ),
}


@pytest.fixture(scope="module", params=list(EXAMPLES))
def example(request: pytest.FixtureRequest) -> Iterator[tuple[Example, Served]]:
    spec = EXAMPLES[request.param]
    with uvicorn_app(spec.target) as served:
        yield spec, served


@pytest.mark.parametrize("mode", MODES)
async def test_tools_read_the_hosts_data(example: tuple[Example, Served], mode: str) -> None:
    spec, served = example
    async with Client(f"{served.base}/mcp", mode=mode) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == spec.tools
        info = await client.call_tool("host_info", {})
        assert info.is_error is False, info.content
        key, value = spec.host_value
        assert info.structured_content["framework"] == spec.name.split("_")[0]
        # Read from the host app's state/config through ctx.app: ctx.app is the host app.
        assert info.structured_content[key] == value
        assert info.structured_content["lifespan_running"] is True
        tool, arguments, expected = spec.data_tool
        result = await client.call_tool(tool, arguments)
        assert result.is_error is False, result.content
        assert result.structured_content == expected


def test_host_route_answers(example: tuple[Example, Served]) -> None:
    spec, served = example
    response = httpx.get(f"{served.base}{spec.route}")
    assert response.status_code == 200
    assert response.json() == spec.route_body


def test_mcp_path_with_and_without_slash_inside_the_hosts_middleware(example: tuple[Example, Served]) -> None:
    spec, served = example
    for path in ("/mcp", "/mcp/"):
        response = httpx.post(f"{served.base}{path}", json={}, headers=ACCEPT)
        assert response.status_code == 400, (path, response.status_code)  # the endpoint's answer, not a 307
        assert response.json()["error"]["code"] == -32600
        # The host's middleware wrapped the MCP app.
        assert response.headers["x-served-by"] == f"{spec.name.split('_')[0]}-example"
    assert httpx.post(f"{served.base}/mcpx", json={}).status_code == 404


@pytest.mark.parametrize("name", list(EXAMPLES))
async def test_lifespan_starts_and_stops_with_the_host(name: str) -> None:
    spec = EXAMPLES[name]
    with uvicorn_app(spec.target) as served:
        assert f"{spec.lifespan_line} started" in served.proc.stderr
        async with Client(f"{served.base}/mcp", mode="2026-07-28") as client:
            assert (await client.call_tool("host_info", {})).is_error is False
        code, log = served.stop()
    # uvicorn exits 0, or (since 0.29) re-raises the SIGTERM it handled once shutdown completed.
    assert code in (0, -signal.SIGTERM), log
    assert f"{spec.lifespan_line} stopped" in log
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
