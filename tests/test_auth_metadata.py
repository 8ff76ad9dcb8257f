"""RFC 9728 metadata: where it is served, what it says, and that every challenge points at it.

Each layout is served by a real uvicorn, and the metadata is always fetched from the URL the
401 challenge names (then from the RFC 9728 well-known location, when it differs).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from mcp_asgi import mount
from mcp_asgi.auth import metadata_routes
from tests.bearer_tokens import ALICE, AUTH_SERVER, READ, protected_server
from tests.conftest import serve
from tests.http_helpers import modern_request

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def document(resource: str, **extra: Any) -> dict[str, Any]:
    return {
        "resource": resource,
        "authorization_servers": [AUTH_SERVER],
        **extra,
        "bearer_methods_supported": ["header"],
    }


async def challenged(http: httpx.AsyncClient, url: str, **headers: str) -> tuple[str, dict[str, Any]]:
    """The metadata URL the endpoint's 401 names, and the document found there."""
    refused = await http.post(url, json={}, headers=headers)
    assert refused.status_code == 401, refused.text
    found = re.search(r'resource_metadata="([^"]+)"', refused.headers["www-authenticate"])
    assert found is not None
    response = await http.get(found.group(1), headers=headers)
    assert response.status_code == 200, (found.group(1), response.status_code)
    assert response.headers["access-control-allow-origin"] == "*"
    return found.group(1), response.json()


async def works_with_token(http: httpx.AsyncClient, url: str) -> None:
    body, headers = modern_request("tools/call", {"name": "whoami", "arguments": {}})
    response = await http.post(url, json=body, headers={**headers, **ALICE})
    assert response.status_code == 200, response.text


async def test_standalone_serves_it_under_the_endpoint_path_and_at_the_root():
    with serve(protected_server(scopes_supported=[READ]).http_app()) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            url, found = await challenged(http, f"{base}/mcp")
            assert url == f"{base}{WELL_KNOWN}/mcp"
            assert found == document(f"{base}/mcp", scopes_supported=[READ])
            assert (await http.get(f"{base}{WELL_KNOWN}")).json() == found
            # HEAD too; anything else is 405 with Allow, and no token is ever asked for.
            head = await http.head(url)
            assert head.status_code == 200 and head.content == b""
            post = await http.post(url)
            assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_a_browser_preflight_of_the_metadata_is_allowed_from_any_origin():
    with serve(protected_server().http_app()) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            preflight = await http.options(
                f"{base}{WELL_KNOWN}/mcp",
                headers={
                    "origin": "https://inspector.example",
                    "access-control-request-method": "GET",
                    "access-control-request-headers": "mcp-protocol-version",
                },
            )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert preflight.headers["access-control-allow-headers"] == "mcp-protocol-version"
    assert "GET" in preflight.headers["access-control-allow-methods"]


async def test_fastapi_mount_registers_it_at_the_hosts_root():
    app = FastAPI()
    mount(app, "/api/v1/mcp", protected_server())
    with serve(app) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            url, found = await challenged(http, f"{base}/api/v1/mcp")
            assert url == f"{base}{WELL_KNOWN}/api/v1/mcp"
            assert found == document(f"{base}/api/v1/mcp")
            await works_with_token(http, f"{base}/api/v1/mcp")
            # FastAPI's own routes are untouched.
            assert (await http.get(f"{base}/openapi.json")).status_code == 200


async def test_nested_mounts_point_at_the_copy_on_the_inner_host():
    inner = Starlette()
    mount(inner, "/api", protected_server())
    outer = Starlette(routes=[Mount("/outer", app=inner)])
    with serve(outer) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            url, found = await challenged(http, f"{base}/outer/api")
            assert url == f"{base}/outer{WELL_KNOWN}/api"
            assert found == document(f"{base}/outer/api")
            await works_with_token(http, f"{base}/outer/api")


async def test_a_mount_with_a_path_parameter_gets_one_document_per_value():
    app = Starlette()
    mount(app, "/tenants/{tenant}/mcp", protected_server())
    with serve(app) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            url, found = await challenged(http, f"{base}/tenants/acme/mcp")
    assert url == f"{base}{WELL_KNOWN}/tenants/acme/mcp"
    assert found["resource"] == f"{base}/tenants/acme/mcp"


async def test_by_hand_the_challenge_names_the_apps_own_copy_and_metadata_routes_adds_the_well_known_one():
    mcp = protected_server()
    app = Starlette(routes=[Mount("/api/v1/mcp", app=mcp.http_app(path="/")), *metadata_routes(mcp, "/api/v1/mcp")])
    with serve(app) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            url, found = await challenged(http, f"{base}/api/v1/mcp/")
            assert url == f"{base}/api/v1/mcp{WELL_KNOWN}"
            assert found == document(f"{base}/api/v1/mcp")
            well_known = await http.get(f"{base}{WELL_KNOWN}/api/v1/mcp")
            assert well_known.status_code == 200 and well_known.json() == found
            assert (await http.get(f"{base}{WELL_KNOWN}")).status_code == 404  # root=False: not claimed


def test_metadata_routes_needs_a_protected_server():
    from mcp_asgi import MCPServer

    with pytest.raises(ValueError, match="has no auth"):
        metadata_routes(MCPServer("open"), "/mcp")
    with pytest.raises(ValueError, match="starting with '/'"):
        metadata_routes(protected_server(), "mcp")
    paths = [route.path for route in metadata_routes(protected_server(), "/mcp", root=True)]
    assert paths == [f"{WELL_KNOWN}/mcp", WELL_KNOWN]


async def test_uvicorn_root_path_and_proxy_headers_give_the_public_urls():
    """Behind a proxy that strips `/proxy` and terminates TLS (uvicorn --root-path --proxy-headers)."""
    app = FastAPI()
    # An app from http_app(auth=...) mounts the same way; the public name must pass the Host guard.
    mount(app, "/api/v1/mcp", protected_server().http_app(path="/", allowed_hosts=["mcp.example.com"]))
    options = {"root_path": "/proxy", "proxy_headers": True, "forwarded_allow_ips": "*"}
    with serve(app, **options) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            forwarded = {"x-forwarded-proto": "https", "host": "mcp.example.com"}
            # The proxy took /proxy off: uvicorn gets /api/v1/mcp and puts --root-path back in front.
            refused = await http.post(f"{base}/api/v1/mcp", json={}, headers=forwarded)
            assert refused.status_code == 401
            expected = f"https://mcp.example.com/proxy{WELL_KNOWN}/api/v1/mcp"
            assert refused.headers["www-authenticate"] == f'Bearer resource_metadata="{expected}"'
            found = await http.get(f"{base}{WELL_KNOWN}/api/v1/mcp", headers=forwarded)
    assert found.json()["resource"] == "https://mcp.example.com/proxy/api/v1/mcp"


async def test_legacy_sse_endpoint_has_its_own_document():
    app = protected_server().http_app(transport="sse")
    with serve(app) as base:
        async with httpx.AsyncClient(timeout=10) as http:
            refused = await http.get(f"{base}/sse")
            assert refused.status_code == 401
            url = re.search(r'resource_metadata="([^"]+)"', refused.headers["www-authenticate"]).group(1)
            assert url == f"{base}{WELL_KNOWN}/sse"
            assert (await http.get(url)).json() == document(f"{base}/sse")
            posted = await http.post(f"{base}/messages/?session_id=x", json={})
            assert posted.status_code == 401
            assert posted.headers["www-authenticate"] == refused.headers["www-authenticate"]
