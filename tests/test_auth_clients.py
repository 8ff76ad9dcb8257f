"""Real clients against a protected endpoint mounted at `/api/v1/mcp` in a FastAPI app.

The official Python SDK (mcp==2.3.0) calls tools with a bearer token in both protocol
generations, and its OAuth discovery step (the helpers `OAuthClientProvider` runs on a 401)
finds the protected resource metadata; so does the TypeScript SDK's, in Node.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.client.auth.utils import (
    build_protected_resource_metadata_discovery_urls,
    extract_resource_metadata_from_www_auth,
    extract_scope_from_www_auth,
    handle_protected_resource_response,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth_utils import check_resource_allowed, resource_url_from_server_url

from mcp_asgi import mount
from tests.bearer_tokens import AUTH_SERVER, READ, protected_server
from tests.conftest import serve

ROOT = Path(__file__).resolve().parent.parent
METADATA = "/.well-known/oauth-protected-resource/api/v1/mcp"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    app = FastAPI()
    mount(app, "/api/v1/mcp", protected_server(required_scopes=[READ], scopes_supported=[READ]))
    with serve(app) as url:
        yield url


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_the_official_client_calls_tools_with_a_bearer_token(base, mode):
    http = create_mcp_http_client(headers={"Authorization": "Bearer alice-token"})
    async with Client(streamable_http_client(f"{base}/api/v1/mcp", http_client=http), mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        result = await client.call_tool("whoami", {})
        assert result.is_error is False
        assert result.structured_content["identity"] == "notes-app|alice"
        assert result.structured_content["scopes"] == ["notes:read", "notes:write"]


async def test_the_official_clients_discovery_finds_the_metadata_from_the_challenge(base):
    server_url = f"{base}/api/v1/mcp"
    async with httpx2.AsyncClient(timeout=10) as http:
        refused = await http.post(server_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401
        header_url = extract_resource_metadata_from_www_auth(refused)
        assert header_url == f"{base}{METADATA}"
        assert extract_scope_from_www_auth(refused) == READ
        urls = build_protected_resource_metadata_discovery_urls(header_url, server_url)
        # The challenge's URL first, then the RFC 9728 path-based one (the same place here), then the root.
        assert urls == [f"{base}{METADATA}", f"{base}{METADATA}", f"{base}/.well-known/oauth-protected-resource"]
        for url in urls[:2]:
            metadata = await handle_protected_resource_response(await http.get(url))
            assert metadata is not None, url
            assert str(metadata.resource) == server_url
            assert [str(server).rstrip("/") for server in metadata.authorization_servers] == [AUTH_SERVER]
            assert metadata.scopes_supported == [READ]
            assert metadata.bearer_methods_supported == ["header"]
            # What OAuthClientProvider checks before it trusts the document (RFC 8707).
            assert check_resource_allowed(resource_url_from_server_url(server_url), str(metadata.resource))


def node_sdk() -> tuple[str, str]:
    """Node 22 and the TypeScript SDK from scripts/node-sdk (installed on first use); skip if that fails locally."""
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "node-sdk")], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = f"scripts/node-sdk could not run: {exc}"
    else:
        if done.returncode == 0:
            node, modules = done.stdout.strip().splitlines()[-2:]
            return node, modules
        reason = f"scripts/node-sdk failed: {done.stderr[-2000:]}"
    if os.environ.get("CI"):
        pytest.fail(reason)  # CI must run it: a skip there would hide a broken install
    pytest.skip(reason)


def test_the_typescript_sdks_discovery_finds_the_metadata(base):
    node, modules = node_sdk()
    script = ROOT / "tests" / "fixtures" / "ts_discovery.mjs"
    done = subprocess.run(
        [node, str(script), modules, f"{base}/api/v1/mcp"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    expected = {
        "resource": f"{base}/api/v1/mcp",
        "authorization_servers": [AUTH_SERVER],
        "scopes_supported": [READ],
        "bearer_methods_supported": ["header"],
    }
    assert found == {
        "status": 401,
        "resourceMetadataUrl": f"{base}{METADATA}",
        "scope": READ,
        "fromHeader": expected,
        "fromWellKnown": expected,
        "allowed": True,
    }
