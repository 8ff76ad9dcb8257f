"""Streamable HTTP, 2026-07-28: every request stands alone (no session), its revision in `_meta`.

The request's headers must mirror its body (`MCP-Protocol-Version`, `Mcp-Method`,
`Mcp-Name`, `Mcp-Param-*`), so gateways can route without reading the body. A call
that runs user code is cancelled when the client closes the connection: that is
how a 2026-07-28 client cancels. The connection is watched from the call's first 50 ms
on (`concurrency.WATCH_AFTER`): shorter calls end before a watch would pay off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import Send

from mcp_asgi.concurrency import DisconnectWatcher
from mcp_asgi.protocol.dispatch import META_VERSION, build_call, read_modern_meta
from mcp_asgi.protocol.jsonrpc import HEADER_MISMATCH, INVALID_REQUEST, NOTIFICATION, RESPONSE, MCPError
from mcp_asgi.protocol.param_headers import decode_header_value, validate_param_headers
from mcp_asgi.protocol.versions import NAMED_METHODS
from mcp_asgi.transports.http_common import send_bytes
from mcp_asgi.transports.http_reply import JSONOrSSEReply, answer

if TYPE_CHECKING:
    from mcp_asgi.transports.streamable_http import StreamableHTTPEndpoint

VERSION_HEADER = "mcp-protocol-version"
# Methods that run user code or stream: a closed connection cancels them.
_USER_CODE = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete", "subscriptions/listen"})


def _header_mismatch(message: str) -> MCPError:
    return MCPError(HEADER_MISMATCH, f"Header mismatch: {message}", http_status=400)


async def serve_modern(
    endpoint: StreamableHTTPEndpoint,
    request: Request,
    send: Send,
    headers: dict[str, str],
    message: dict[str, Any],
    kind: str,
) -> None:
    """Answer one POSTed 2026-07-28 message; raises `MCPError` for a request that cannot run."""
    if kind == RESPONSE:
        raise MCPError(INVALID_REQUEST, "Invalid Request: clients do not send responses", http_status=400)
    if kind == NOTIFICATION:
        # 2026-07-28 defines no client notifications over HTTP; accept and ignore them.
        await send_bytes(send, 202, b"")
        return
    params = message.get("params") or {}
    _check_version_header(params, headers)
    revision = read_modern_meta(params)
    _check_method_headers(endpoint, message["method"], params, headers)
    endpoint.server._core.require_known(revision, message["method"])
    reply = JSONOrSSEReply(send, [], allow_sse=not endpoint.json_response)
    call = build_call(
        message, revision, request=request, host_app=request.scope.get("mcp_asgi.host_app"), send=reply.early
    )
    if call.method not in _USER_CODE:
        await answer(endpoint.server._core, call, reply)
        return
    with DisconnectWatcher(request.receive, reply.abandon):
        await answer(endpoint.server._core, call, reply)


def _check_version_header(params: dict[str, Any], headers: dict[str, str]) -> None:
    meta = params.get("_meta")
    meta_version = meta.get(META_VERSION) if isinstance(meta, dict) else None
    header_version = headers.get(VERSION_HEADER)
    if meta_version is not None:
        if header_version is None:
            raise _header_mismatch("the MCP-Protocol-Version header is required")
        if header_version != meta_version:
            raise _header_mismatch(
                f"MCP-Protocol-Version header {header_version!r} does not match _meta protocolVersion {meta_version!r}"
            )


def _check_method_headers(
    endpoint: StreamableHTTPEndpoint, method: str, params: dict[str, Any], headers: dict[str, str]
) -> None:
    mcp_method = headers.get("mcp-method")
    if mcp_method is None:
        raise _header_mismatch("the Mcp-Method header is required")
    if mcp_method != method:
        raise _header_mismatch(f"Mcp-Method header {mcp_method!r} does not match body method {method!r}")
    named = NAMED_METHODS.get(method)
    if named is None:
        return
    raw_name = headers.get("mcp-name")
    if raw_name is None:
        raise _header_mismatch(f"the Mcp-Name header is required for {method}")
    name = decode_header_value(raw_name.strip())
    if name is None:
        raise _header_mismatch("the Mcp-Name header has a malformed base64 value")
    if name != params.get(named):
        raise _header_mismatch(f"Mcp-Name header value {name!r} does not match body value {params.get(named)!r}")
    if method == "tools/call":
        tool = endpoint.server._registry.get("tools", name)
        if tool is not None and tool.param_headers:
            validate_param_headers(tool.param_headers, params.get("arguments"), headers)
