"""FastAPI routes as tools (`mcp.add_routes`, `MCPServer.from_fastapi`), with the official client on a real uvicorn."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import Cookie, Depends, FastAPI, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from pydantic import BaseModel

from mcp_asgi import FastMCP, MCPServer, mount
from mcp_asgi.fastapi import STATUS_META_KEY, add_routes
from tests.conftest import serve
from tests.fixtures.procs import FIXTURES, ROOT

MODES = ["legacy", "2026-07-28"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


class Tag(BaseModel):
    label: str


class Item(BaseModel):
    name: str
    price: float
    tags: list[Tag] = []


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Replacement(BaseModel):
    item_id: int
    name: str


async def current_user(authorization: str | None = Header(None)) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return authorization.removeprefix("Bearer ")


def shop_app(seen: list[str | None]) -> FastAPI:
    """A shop API: models, a bearer dependency, a middleware recording what it saw, odd responses."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"items": {1: Item(name="pen", price=1.5, tags=[Tag(label="office")])}}

    app = FastAPI(title="Shop", lifespan=lifespan)

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        # Runs for the MCP request and, inside it, for the route it calls: no deadlock.
        seen.append(request.scope.get("mcp_asgi.tool"))
        return await call_next(request)

    @app.get("/items/{item_id}", tags=["items"], response_model=Item)
    async def read_item(item_id: int, request: Request, x_trace: str = Header(), q: str | None = None) -> Item:
        """Read one item."""
        item = request.state.items.get(item_id)
        if item is None:
            raise HTTPException(404, "Item not found")
        return Item(name=f"{item.name} {q or ''}".strip() + f" [{x_trace}]", price=item.price, tags=item.tags)

    @app.post("/items", tags=["items"], operation_id="create_item", status_code=201, summary="Create an item")
    async def create_item(item: Item, request: Request, user: str = Depends(current_user)) -> Item:
        request.state.items[len(request.state.items) + 1] = item
        return Item(name=f"{item.name} by {user}", price=item.price, tags=item.tags)

    @app.put("/items/{item_id}", tags=["items"], operation_id="replace_item")
    async def replace_item(item_id: int, replacement: Replacement) -> dict:
        return {"path_id": item_id, "body_id": replacement.item_id}

    @app.get("/me", tags=["users"], operation_id="whoami")
    async def whoami(user: str = Depends(current_user), theme: str | None = Cookie(None)) -> dict:
        return {"user": user, "theme": theme}

    @app.get("/count", operation_id="count", response_model=int)
    async def count(request: Request) -> int:
        return len(request.state.items)

    @app.post("/trees", operation_id="count_nodes")
    async def count_nodes(root: Node) -> dict:
        def size(node: Node) -> int:
            return 1 + sum(size(child) for child in node.children)

        return {"nodes": size(root)}

    @app.get("/files/{file_path:path}", operation_id="file_info")
    async def file_info(file_path: str) -> dict:
        return {"path": file_path}

    @app.get("/pairs/{a}/{b}", operation_id="pair")
    async def pair(a: str, b: str) -> dict:
        return {"a": a, "b": b}

    @app.post("/login", operation_id="login")
    async def login(username: str = Form(), remember: bool = Form(False)) -> dict:
        return {"username": username, "remember": remember}

    @app.get("/report", operation_id="report", response_class=PlainTextResponse)
    async def report() -> str:
        return "all good"

    @app.get("/logo", operation_id="logo")
    async def logo() -> Response:
        return Response(PNG, media_type="image/png")

    @app.get("/export", operation_id="export")
    async def export() -> Response:
        return Response(b"\x00\x01binary", media_type="application/octet-stream")

    @app.get("/endless", operation_id="endless")
    async def endless() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield b"x" * 4096
                await asyncio.sleep(0)

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/odd", operation_id="odd", response_model=Item)
    async def odd() -> Any:
        return JSONResponse(["not", "an", "item"])

    @app.get("/boom", operation_id="boom")
    async def boom() -> dict:
        raise RuntimeError("disk on fire")

    @app.get("/hidden", include_in_schema=False)
    async def hidden() -> dict:
        return {}

    return app


@pytest.fixture(scope="module")
def shop() -> Any:
    seen: list[str | None] = []
    app = shop_app(seen)
    mcp = MCPServer("Shop MCP")

    @mcp.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Any:
        return PlainTextResponse("ok")

    mount(app, "/mcp", mcp)

    # Metadata beside the MCP endpoint, as an auth layer adds it: a plain route, never a tool.
    async def metadata(request: Request) -> Any:
        return JSONResponse({"resource": "http://shop"})

    app.add_route("/.well-known/oauth-protected-resource", metadata)
    add_routes(mcp, app, max_response_bytes=64 * 1024)

    @app.get("/later", operation_id="later")
    async def later() -> dict:
        return {}

    # A catch-all added after the mount: its values must not reach the MCP endpoint.
    @app.get("/{page}", operation_id="page")
    async def page(page: str) -> dict:
        return {"page": page}

    mcp.add_routes(app, include_operations=["page"])
    with serve(app) as base:
        yield f"{base}/mcp", seen


def bearer(url: str, token: str, **headers: str) -> Any:
    return streamable_http_client(url, http_client=create_mcp_http_client(headers={"Authorization": token, **headers}))


def walk_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in walk_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in walk_refs(v)]
    return []


@pytest.mark.parametrize("mode", MODES)
async def test_selected_routes_are_tools_and_nothing_else(shop, mode):
    url, _ = shop
    async with Client(url, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == {
        "read_item_items__item_id__get",
        "create_item",
        "replace_item",
        "whoami",
        "count",
        "count_nodes",
        "file_info",
        "pair",
        "login",
        "report",
        "logo",
        "export",
        "endless",
        "boom",
        "odd",
        "page",
    }  # no /later (added after), /hidden, /docs, /openapi.json, /mcp, /mcp/health or /.well-known/...


@pytest.mark.parametrize("mode", MODES)
async def test_input_schemas_come_from_the_openapi_operation(shop, mode):
    url, _ = shop
    async with Client(url, mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    read = tools["read_item_items__item_id__get"]
    assert read.description == "Read one item."
    assert read.annotations.read_only_hint is True
    assert set(read.input_schema["properties"]) == {"item_id", "x-trace", "q"}
    assert read.input_schema["properties"]["item_id"]["type"] == "integer"
    assert sorted(read.input_schema["required"]) == ["item_id", "x-trace"]
    # The Pydantic body's fields sit beside the parameters, its nested model inlined.
    create = tools["create_item"]
    assert create.description == "Create an item"
    assert set(create.input_schema["properties"]) == {"name", "price", "tags"}
    assert create.input_schema["properties"]["tags"]["items"]["properties"]["label"]["type"] == "string"
    assert sorted(create.input_schema["required"]) == ["name", "price"]
    assert walk_refs(create.input_schema) == []
    assert "authorization" not in create.input_schema["properties"]  # forwarded, never an argument
    # A body field named like a path parameter: the whole body is one argument.
    replace = tools["replace_item"]
    assert set(replace.input_schema["properties"]) == {"item_id", "body"}
    assert set(replace.input_schema["properties"]["body"]["properties"]) == {"item_id", "name"}
    # Forwarded cookie and authorization: whoami takes no arguments.
    assert tools["whoami"].input_schema["properties"] == {}
    # A model that contains itself keeps one $ref, into the tool schema's own $defs.
    nodes = tools["count_nodes"].input_schema
    assert set(walk_refs(nodes)) == {"#/$defs/Node"}
    assert set(nodes["$defs"]["Node"]["properties"]) == {"name", "children"}


@pytest.mark.parametrize("mode", MODES)
async def test_response_model_is_the_output_schema_and_structured_content(shop, mode):
    url, _ = shop
    async with Client(url, mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        read = await client.call_tool("read_item_items__item_id__get", {"item_id": 1, "x-trace": "t1", "q": "blue"})
        count = await client.call_tool("count", {})
    schema = tools["read_item_items__item_id__get"].output_schema
    assert schema["type"] == "object" and set(schema["properties"]) == {"name", "price", "tags"}
    assert walk_refs(schema) == []
    # A non-object response model is wrapped, as MCP asks for an object.
    assert tools["count"].output_schema["properties"]["result"]["type"] == "integer"
    assert tools["whoami"].output_schema == {"type": "object", "additionalProperties": True}
    assert tools["report"].output_schema is None  # plain text: no JSON schema
    assert read.is_error is False
    assert read.structured_content == {"name": "pen blue [t1]", "price": 1.5, "tags": [{"label": "office"}]}
    assert json.loads(read.content[0].text) == read.structured_content
    assert count.structured_content["result"] >= 1


@pytest.mark.parametrize("mode", MODES)
async def test_route_errors_are_tool_errors_with_status_and_detail(shop, mode):
    url, _ = shop
    async with Client(url, mode=mode) as client:
        missing = await client.call_tool("read_item_items__item_id__get", {"item_id": 99, "x-trace": "t"})
        invalid = await client.call_tool("read_item_items__item_id__get", {"item_id": "abc", "x-trace": "t"})
        no_header = await client.call_tool("read_item_items__item_id__get", {"item_id": 1})
        crashed = await client.call_tool("boom", {})
        odd = await client.call_tool("odd", {})
    assert missing.is_error is True
    assert missing.content[0].text == "GET /items/{item_id} answered 404 Not Found: Item not found"
    assert missing.meta[STATUS_META_KEY] == 404
    assert invalid.is_error is True and invalid.meta[STATUS_META_KEY] == 422
    assert "422" in invalid.content[0].text and "valid integer" in invalid.content[0].text
    assert no_header.is_error is True and "x-trace" in no_header.content[0].text
    assert crashed.is_error is True and crashed.meta[STATUS_META_KEY] == 500
    # A 2xx answer that is not the promised response model cannot be structured content.
    assert odd.is_error is True and "not its response model" in odd.content[0].text


@pytest.mark.parametrize("mode", MODES)
async def test_bearer_token_and_cookie_reach_the_route_dependency(shop, mode):
    url, _ = shop
    async with Client(bearer(url, "Bearer alice", Cookie="theme=dark"), mode=mode) as client:
        me = await client.call_tool("whoami", {})
        created = await client.call_tool("create_item", {"name": "ink", "price": 3, "tags": [{"label": "new"}]})
    assert me.structured_content == {"user": "alice", "theme": "dark"}
    assert created.is_error is False
    assert created.structured_content == {"name": "ink by alice", "price": 3.0, "tags": [{"label": "new"}]}
    async with Client(url, mode=mode) as client:
        anonymous = await client.call_tool("whoami", {})
    assert anonymous.is_error is True and anonymous.meta[STATUS_META_KEY] == 401
    assert anonymous.content[0].text.endswith(": Not authenticated")


async def test_bodies_paths_forms_and_media_types(shop):
    url, seen = shop
    async with Client(url) as client:
        replaced = await client.call_tool("replace_item", {"item_id": 5, "body": {"item_id": 6, "name": "x"}})
        tree = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}, {"name": "d"}]}
        nodes = await client.call_tool("count_nodes", tree)
        file_info = await client.call_tool("file_info", {"file_path": "docs/a b.txt"})
        pair = await client.call_tool("pair", {"a": "{b}", "b": "x y"})
        login = await client.call_tool("login", {"username": "bob", "remember": True})
        report = await client.call_tool("report", {})
        logo = await client.call_tool("logo", {})
        export = await client.call_tool("export", {})
        endless = await client.call_tool("endless", {})
    assert replaced.structured_content == {"path_id": 5, "body_id": 6}
    assert nodes.structured_content == {"nodes": 4}
    assert file_info.structured_content == {"path": "docs/a b.txt"}
    assert pair.structured_content == {"a": "{b}", "b": "x y"}
    assert login.structured_content == {"username": "bob", "remember": True}
    assert report.content[0].text == "all good" and report.structured_content is None
    assert logo.content[0].type == "image" and logo.content[0].mime_type == "image/png"
    assert export.content[0].type == "resource"
    assert export.content[0].resource.mime_type == "application/octet-stream"
    assert export.content[0].resource.uri.endswith("/export")
    assert endless.is_error is True and "larger than 65536 bytes" in endless.content[0].text
    # The app's own middleware ran for the in-process calls, marked with the tool's name.
    assert "replace_item" in seen and "logo" in seen


async def test_argument_values_cannot_steer_the_call_to_another_endpoint(shop):
    url, _ = shop
    async with Client(url) as client:
        fine = await client.call_tool("page", {"page": "about"})
        steered = await client.call_tool("page", {"page": "mcp"})
        slashed = await client.call_tool("page", {"page": "a/b"})
    assert fine.structured_content == {"page": "about"}
    assert steered.is_error is True and "does not reach GET /{page}" in steered.content[0].text
    assert slashed.is_error is True


async def test_calls_into_the_host_app_from_its_own_request_run_concurrently(shop):
    url, _ = shop
    async with Client(url) as client:
        results = await asyncio.wait_for(
            asyncio.gather(*(client.call_tool("count", {}) for _ in range(8))),
            timeout=20,
        )
    assert all(result.is_error is False for result in results)


def lifespan_app(entries: list[str]) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        entries.append("start")
        yield {"greeting": "hello"}
        entries.append("stop")

    app = FastAPI(title="Greeter", lifespan=lifespan)

    @app.get("/greet/{name}", operation_id="greet")
    async def greet(name: str, request: Request) -> dict:
        return {"text": f"{request.state.greeting} {name}"}

    return app


@pytest.mark.parametrize("mode", MODES)
async def test_from_fastapi_standalone_runs_the_app_lifespan(mode):
    entries: list[str] = []
    app = lifespan_app(entries)
    mcp = FastMCP.from_fastapi(app)
    assert isinstance(mcp, MCPServer) and mcp.name == "Greeter"
    with serve(mcp.http_app()) as base:
        async with Client(f"{base}/mcp", mode=mode) as client:
            greeted = await client.call_tool("greet", {"name": "ada"})
    assert greeted.structured_content == {"text": "hello ada"}
    assert entries == ["start", "stop"]


async def test_from_fastapi_mounted_in_its_own_app_starts_the_lifespan_once():
    entries: list[str] = []
    app = lifespan_app(entries)
    mcp = MCPServer.from_fastapi(app, name="mounted", forward_headers=())
    mount(app, "/mcp", mcp)
    with serve(app) as base:
        async with Client(f"{base}/mcp") as client:
            greeted = await client.call_tool("greet", {"name": "bo"})
    assert greeted.structured_content == {"text": "hello bo"}
    assert entries == ["start", "stop"]


@pytest.mark.parametrize("mode", MODES)
async def test_from_fastapi_over_stdio_has_the_lifespan_and_no_headers(mode):
    params = StdioServerParameters(command=sys.executable, args=[str(FIXTURES / "fastapi_stdio.py")], cwd=str(ROOT))
    async with Client(params, mode=mode) as client:
        greeted = await client.call_tool("greet", {"name": "cy"})
        anonymous = await client.call_tool("whoami", {})
    assert greeted.structured_content == {"text": "hello cy"}
    # Nothing to forward over stdio, and `authorization` is forwarded so never an argument.
    assert anonymous.is_error is True and anonymous.meta[STATUS_META_KEY] == 401


async def test_unforwarded_headers_and_cookies_become_arguments():
    app = shop_app([])
    mcp = MCPServer.from_fastapi(app, include_tags=["users"], forward_headers=())
    whoami = mcp._tools["whoami"].definition["inputSchema"]
    assert set(whoami["properties"]) == {"authorization", "theme"}
    assert list(mcp._tools) == ["whoami"]


async def test_unforwarded_header_and_cookie_parameters_are_sent_from_arguments():
    mcp = MCPServer.from_fastapi(shop_app([]), include_tags=["users"], forward_headers=())
    with serve(mcp.http_app()) as base:
        async with Client(bearer(f"{base}/mcp", "Bearer mallory", Cookie="theme=stolen")) as client:
            me = await client.call_tool("whoami", {"authorization": "Bearer zed", "theme": "light"})
            bad = await client.call_tool("whoami", {"authorization": "Bearer zed", "theme": "a; admin=1"})
    assert me.structured_content == {"user": "zed", "theme": "light"}
    assert bad.is_error is True and "cookie value" in bad.content[0].text


def test_exclusions_by_operation_and_tag():
    app = shop_app([])
    mcp = MCPServer.from_fastapi(app, exclude_tags=["items"], exclude_operations=["boom", "endless"])
    assert "boom" not in mcp._tools and "endless" not in mcp._tools
    assert not {"create_item", "replace_item", "read_item_items__item_id__get"} & set(mcp._tools)
    assert {"whoami", "count", "odd"} <= set(mcp._tools)
    both = MCPServer.from_fastapi(app, include_tags=["items"], exclude_operations=["replace_item"])
    assert set(both._tools) == {"create_item", "read_item_items__item_id__get"}


def test_bad_options_are_refused_with_the_argument_named(caplog):
    app = shop_app([])
    with pytest.raises(ValueError, match="include_operations.*'nope'"):
        MCPServer("x").add_routes(app, include_operations=["nope"])
    with pytest.raises(ValueError, match="include_tags.*'nope'"):
        MCPServer("x").add_routes(app, include_tags=["nope"])
    with pytest.raises(TypeError, match="include_operations"):
        MCPServer("x").add_routes(app, include_operations="whoami")
    with pytest.raises(ValueError, match="forward_headers.*host"):
        MCPServer("x").add_routes(app, forward_headers=["Host"])
    with pytest.raises(TypeError, match="FastAPI application"):
        MCPServer("x").add_routes(object())
    twice = MCPServer("x")
    twice.add_routes(app, include_operations=["whoami"])
    with pytest.raises(ValueError, match="'whoami' already exists"):
        twice.add_routes(app, include_operations=["whoami"])

    @app.post("/upload", operation_id="upload")
    async def upload(file: UploadFile) -> dict:
        return {}

    with caplog.at_level(logging.WARNING, logger="mcp_asgi"):
        tools = MCPServer("x").add_routes(app)
    assert "upload" not in {tool.name for tool in tools} and "multipart/form-data" in caplog.text
    with pytest.raises(ValueError, match="'upload' cannot be a tool.*multipart"):
        MCPServer("x").add_routes(app, include_operations=["upload"])


def test_refs_through_a_cycle_of_two_models_and_an_exponential_document_stay_bounded():
    from mcp_asgi.fastapi.schemas import INLINE_BUDGET, resolve_schema

    cyclic = {
        "components": {
            "schemas": {
                "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}},
                "B": {
                    "type": "object",
                    "properties": {"a": {"$ref": "#/components/schemas/A"}, "n": {"type": "integer"}},
                },
            }
        }
    }
    resolved = resolve_schema(cyclic, {"$ref": "#/components/schemas/A"})
    # A is inlined at the root; B inside it is inlined too; the way back to A is a $ref.
    assert resolved["properties"]["b"]["properties"]["n"] == {"type": "integer"}
    assert resolved["properties"]["b"]["properties"]["a"] == {"$ref": "#/$defs/A"}
    assert resolved["$defs"]["A"]["properties"]["b"]["properties"]["a"] == {"$ref": "#/$defs/A"}

    # Each model refers to the next one twice: inlining would need 2**40 nodes.
    names = [f"M{i}" for i in range(41)]
    schemas: dict[str, Any] = {name: {"type": "object", "properties": {}} for name in names}
    for here, there in zip(names[:-1], names[1:], strict=True):
        ref = {"$ref": f"#/components/schemas/{there}"}
        schemas[here]["properties"] = {"left": ref, "right": dict(ref)}
    big = resolve_schema({"components": {"schemas": schemas}}, {"$ref": "#/components/schemas/M0"})
    assert big["properties"]["left"] == {"$ref": "#/$defs/M1"}
    assert set(big["$defs"]) == set(names[1:])
    assert len(json.dumps(big)) < INLINE_BUDGET * 10
