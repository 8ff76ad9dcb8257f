"""The protocol core: method -> handler, with each revision's rules applied to the result.

Transport-agnostic: a transport builds a `Call` (which revision, which session,
where request-scoped messages go) and awaits `ProtocolCore.handle(call)`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from mcp_asgi.principal import principal_of
from mcp_asgi.protocol.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    UNSUPPORTED_PROTOCOL_VERSION,
    MCPError,
    RequestId,
    invalid_params,
)
from mcp_asgi.protocol.listen import listen
from mcp_asgi.protocol.mrtr import MRTR_METHODS, InputRequired, RequestStateCodec, digest
from mcp_asgi.protocol.notifications import ChangeHub
from mcp_asgi.protocol.registry import Kind, Registry
from mcp_asgi.protocol.scopes import allows, check_scopes, granted_scopes
from mcp_asgi.protocol.versions import (
    CACHEABLE_METHODS,
    MODERN_VERSIONS,
    REVISIONS,
    SUPPORTED_VERSIONS,
    Revision,
    negotiate,
)

if TYPE_CHECKING:
    from starlette.requests import Request

    from mcp_asgi.protocol.task_hooks import TaskHooks

logger = logging.getLogger("mcp_asgi")

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LEVEL_RANK = {level: rank for rank, level in enumerate(LOG_LEVELS)}


def is_log_level(value: Any) -> bool:
    return isinstance(value, str) and value in LEVEL_RANK


# Sends a request-scoped message to the client; None is a keep-alive. Returns False if it cannot stream.
Send = Callable[[dict[str, Any] | None], Awaitable[Any]]


class Session(Protocol):
    """The parts of a 2025 session record the core reads and changes (`transports.sessions.SessionRecord`)."""

    session_id: str
    protocol_version: str | None
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    log_level: str | None
    subscriptions: set[str]

    def adopt_client(self, capabilities: Any, client_info: Any) -> None: ...

    def subscribe(self, uri: str) -> bool: ...


class SessionChanges(Protocol):
    """Where the core writes a change to a stored 2025 session (`transports.sessions.SessionStore`).

    Field by field, because the record a call holds may be a copy that other workers'
    calls change too. A call without one holds a record nobody else sees (a session
    being created, stdio's own), and the core changes only that record.
    """

    async def update(self, session_id: str, **fields: Any) -> bool: ...

    async def subscribe(self, session_id: str, uri: str) -> bool: ...

    async def unsubscribe(self, session_id: str, uri: str) -> bool: ...


# Not a dataclass: `import mcp_asgi` loads this module, and creating a dataclass exec()s the
# source of its methods (ten of them were a quarter of our import cost).
class CallState:
    """What changes while a call runs; everything else about a call is fixed when it is built."""

    __slots__ = ("inputs", "consumed", "asked")

    def __init__(self) -> None:
        # 2026-07-28 MRTR: answers the client supplied (inputResponses + requestState), and those used so far.
        self.inputs: dict[str, Any] = {}
        self.consumed: dict[str, Any] = {}
        self.asked = 0


class Call(NamedTuple):
    """One request as the core sees it, whatever transport brought it. Made by `build_call` only.

    Immutable (a named tuple: the cheapest immutable record to build on the hot path);
    what changes while the call runs is in `state`.
    """

    revision: Revision
    method: str
    params: dict[str, Any]
    request_id: RequestId
    # `params["_meta"]` when it is an object, else empty.
    meta: dict[str, Any]
    # The 2025 session the request belongs to; None on 2026-07-28 and stateless endpoints.
    session: Session | None
    # Where changes to `session` are stored; None when the record is the transport's own.
    sessions: SessionChanges | None
    request: Request | None
    host_app: Any
    # Request-scoped messages (progress, logs) for the client; None when there is no way to send them.
    send: Send | None
    # 2025 sessions: send a request to the client and await its answer (None where impossible).
    request_client: Callable[[str, dict[str, Any]], Awaitable[Any]] | None
    # 2025-11-25 SSE polling: end the HTTP response now, the call's later messages await a resume.
    close_stream: Callable[[], Awaitable[None]] | None
    state: CallState

    # What the client declared: in `_meta` on every 2026-07-28 request, at `initialize` on 2025 sessions.
    @property
    def client_capabilities(self) -> dict[str, Any]:
        if self.revision.stateless:
            return self.meta.get(META_CAPABILITIES) or {}
        return self.session.client_capabilities if self.session is not None else {}

    @property
    def client_info(self) -> dict[str, Any] | None:
        if self.revision.stateless:
            return self.meta.get(META_CLIENT_INFO)
        return self.session.client_info if self.session is not None else None

    @property
    def log_level(self) -> str | None:
        if self.revision.stateless:
            return self.meta.get(META_LOG_LEVEL)
        return self.session.log_level if self.session is not None else None


def build_call(
    message: dict[str, Any],
    revision: Revision,
    *,
    session: Session | None = None,
    sessions: SessionChanges | None = None,
    request: Request | None = None,
    host_app: Any = None,
    send: Send | None = None,
    request_client: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None,
    close_stream: Callable[[], Awaitable[None]] | None = None,
) -> Call:
    """The one place a `Call` is made: a transport hands over the request message and what it knows.

    `message` is a classified JSON-RPC request; a 2026-07-28 one has had its `_meta`
    checked by `read_modern_meta`, which gave `revision`.
    """
    params = message.get("params") or {}
    meta = params.get("_meta")
    return Call(
        revision,
        message["method"],
        params,
        message["id"],
        meta if isinstance(meta, dict) else {},
        session,
        sessions,
        request,
        host_app,
        send,
        request_client,
        close_stream,
        CallState(),
    )


async def _change_session(call: Call, session: Session, **fields: Any) -> None:
    """Set fields of the call's session: on the record it holds, and in the store when there is one."""
    for name, value in fields.items():
        setattr(session, name, value)
    if call.sessions is not None:
        await call.sessions.update(session.session_id, **fields)


def unsupported_version(requested: Any) -> MCPError:
    return MCPError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(SUPPORTED_VERSIONS), "requested": requested},
        http_status=400,
    )


def read_modern_meta(params: dict[str, Any]) -> Revision:
    """The revision a modern request declares in `_meta`, once the rest of `_meta` is checked."""
    meta = params.get("_meta")
    if not isinstance(meta, dict):
        raise _bad_meta(f"Invalid params: a {MODERN_VERSIONS[-1]} request must carry `_meta` with {META_VERSION}")
    version = meta.get(META_VERSION)
    # Every missing or malformed field at once, so a client fixes its request in one round.
    problems = []
    if not isinstance(version, str):
        problems.append(f"`_meta` is missing {META_VERSION}")
    if not isinstance(meta.get(META_CAPABILITIES), dict):
        problems.append(f"`_meta` is missing {META_CAPABILITIES}")
    level = meta.get(META_LOG_LEVEL)
    if level is not None and not is_log_level(level):
        problems.append(f"{META_LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}")
    if problems:
        raise _bad_meta("Invalid params: " + "; ".join(problems))
    revision = REVISIONS.get(version)
    if revision is None or not revision.stateless:
        raise unsupported_version(version)
    return revision


def _page(items: list[Any], cursor: Any, size: int | None) -> tuple[list[Any], str | None]:
    start = 0
    if cursor is not None:
        try:
            start = int(base64.urlsafe_b64decode(str(cursor).encode()).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise invalid_params("Invalid params: unknown pagination cursor") from None
        if start < 0 or start > len(items):
            raise invalid_params("Invalid params: unknown pagination cursor")
    if size is None:
        return items[start:], None
    end = start + size
    next_cursor = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
    return items[start:end], next_cursor


def _require_str(params: dict[str, Any], key: str, method: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise invalid_params(f"Invalid params: {method} needs a string `{key}`")
    return value


class ServerSettings(Protocol):
    """The public settings of the server the core answers for (read per request: they may change)."""

    server_info: dict[str, Any]
    instructions: str | None
    page_size: int | None
    cache_ttl_ms: int
    keepalive_interval: float
    hide_unauthorized: bool


class ProtocolCore:
    """Answers MCP requests for one server."""

    def __init__(
        self,
        settings: ServerSettings,
        registry: Registry,
        hub: ChangeHub,
        state_codec: RequestStateCodec,
        make_context: Callable[[Call], Any],
    ) -> None:
        self.server = settings
        self.registry = registry
        self.hub = hub
        self.state_codec = state_codec
        # Builds the `Context` user functions receive; the server supplies it (its `context_class`).
        self.context = make_context
        # The tasks extension, when the server installs it (mcp_asgi/tasks/).
        self.tasks: TaskHooks | None = None
        self._handlers: dict[str, Callable[[Call], Awaitable[dict[str, Any]]]] = {
            "initialize": self._initialize,
            "ping": self._empty,
            "logging/setLevel": self._set_level,
            "server/discover": self._discover,
            "tools/list": self._tools_list,
            "tools/call": self._tools_call,
            "resources/list": self._resources_list,
            "resources/templates/list": self._templates_list,
            "resources/read": self._resources_read,
            "prompts/list": self._prompts_list,
            "prompts/get": self._prompts_get,
            "completion/complete": self._complete,
            "resources/subscribe": self._subscribe,
            "resources/unsubscribe": self._unsubscribe,
            "subscriptions/listen": self._listen,
        }
        # What `_handlers` is without MCP middleware; `wrap_handlers` derives chains from it.
        self._base_handlers = self._handlers

    def wrap_handlers(
        self, wrap: Callable[[dict[str, Callable[[Call], Awaitable[dict[str, Any]]]]], dict[str, Any]] | None
    ) -> None:
        """Dispatch through `wrap(handlers)` (MCP middleware chains); None restores the plain handlers.

        Done once per change, so a request pays nothing for middleware it does not have.
        """
        self._handlers = self._base_handlers if wrap is None else wrap(self._base_handlers)

    def knows(self, revision: Revision, method: str) -> bool:
        if method == "completion/complete" and self.registry.completion is None:
            return False
        return revision.allows(method) and method in self._handlers

    def require_known(self, revision: Revision, method: str) -> None:
        """Raise method-not-found (404 on 2026-07-28 HTTP) unless `revision` has `method`."""
        if not self.knows(revision, method):
            status = 404 if revision.stateless else 200
            raise MCPError(METHOD_NOT_FOUND, f"Method not found: {method}", http_status=status)

    async def handle(self, call: Call) -> dict[str, Any]:
        """The result of one request, shaped for its revision; raises `MCPError`."""
        self.require_known(call.revision, call.method)
        mrtr = call.revision.stateless and call.method in MRTR_METHODS
        if mrtr and ("requestState" in call.params or "inputResponses" in call.params):
            self._load_inputs(call)
        try:
            result = await self._handlers[call.method](call)
        except MCPError:
            raise
        except InputRequired as need:
            if not mrtr:
                raise MCPError(
                    INTERNAL_ERROR, f"{call.method} cannot ask the client for input on revision {call.revision.version}"
                ) from None
            result = {
                "resultType": "input_required",
                "inputRequests": need.requests,
                "requestState": self.state_codec.seal(self._binding(call), call.state.consumed),
            }
        except Exception as exc:
            # The text of an unexpected exception can hold secrets: it goes to the log only.
            logger.exception("Handler for %s raised", call.method)
            raise MCPError(INTERNAL_ERROR, "Internal error", http_status=200) from exc
        if call.revision.result_type:
            result.setdefault("resultType", "complete")
            if call.method in CACHEABLE_METHODS and result["resultType"] == "complete":
                result.setdefault("ttlMs", self.server.cache_ttl_ms)
                result.setdefault("cacheScope", "public" if call.method != "resources/read" else "private")
            meta = result.get("_meta")
            if meta is None:
                result["_meta"] = {META_SERVER_INFO: self.server.server_info}
            else:
                meta.setdefault(META_SERVER_INFO, self.server.server_info)
        return result

    def _binding(self, call: Call) -> dict[str, Any]:
        """What a requestState is bound to: the method, its target, its arguments and the user."""
        params = call.params
        target = params.get("uri") if call.method == "resources/read" else params.get("name")
        # The same principal a 2025 session is bound to, so both generations agree on who asked.
        principal = principal_of(call.request.scope) if call.request is not None else None
        return {"m": call.method, "t": target, "a": digest(params.get("arguments")), "p": principal}

    def _load_inputs(self, call: Call) -> None:
        token = call.params.get("requestState")
        if token is not None:
            call.state.inputs.update(self.state_codec.open(token, self._binding(call)))
        responses = call.params.get("inputResponses")
        if isinstance(responses, dict):
            call.state.inputs.update(responses)
        elif responses is not None:
            raise invalid_params("Invalid params: inputResponses must be an object")

    # Handshake and housekeeping.
    def capabilities(self) -> dict[str, Any]:
        caps: dict[str, Any] = {
            "tools": {"listChanged": True},
            "resources": {"subscribe": True, "listChanged": True},
            "prompts": {"listChanged": True},
            "logging": {},
        }
        if self.registry.completion is not None:
            caps["completions"] = {}
        return caps

    async def _initialize(self, call: Call) -> dict[str, Any]:
        revision = negotiate(call.params.get("protocolVersion"))
        session = call.session
        if session is not None:
            session.adopt_client(call.params.get("capabilities"), call.params.get("clientInfo"))
            await _change_session(
                call,
                session,
                protocol_version=revision.version,
                client_capabilities=session.client_capabilities,
                client_info=session.client_info,
            )
        result: dict[str, Any] = {
            "protocolVersion": revision.version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server.server_info,
        }
        if self.server.instructions:
            result["instructions"] = self.server.instructions
        return result

    async def _empty(self, call: Call) -> dict[str, Any]:
        return {}

    async def _set_level(self, call: Call) -> dict[str, Any]:
        level = call.params.get("level")
        if not is_log_level(level):
            raise invalid_params(f"Invalid params: level must be one of {', '.join(LEVEL_RANK)}")
        if call.session is not None:
            await _change_session(call, call.session, log_level=level)
        return {}

    async def _discover(self, call: Call) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": list(SUPPORTED_VERSIONS),
            "capabilities": self.capabilities(),
        }
        if self.tasks is not None:
            self.tasks.advertise(result["capabilities"])
        if self.server.instructions:
            result["instructions"] = self.server.instructions
        return result

    # Lists.
    def _list(self, call: Call, key: str, kind: Kind, legacy: bool = False) -> dict[str, Any]:
        """One page of the definitions of the components of `kind` this call may see (`legacy_definition`s).

        With `hide_unauthorized`, an HTTP request sees only what its scopes allow; a list
        without scoped components skips that and costs what it did before scopes existed.
        """
        items = self.registry.snapshot(kind)
        request = call.request
        per_user = False
        if self.server.hide_unauthorized and request is not None and self.registry.has_scoped(kind):
            per_user = True
            granted = granted_scopes(request)
            items = [item for item in items if allows(item, granted)]
        page, next_cursor = _page(items, call.params.get("cursor"), self.server.page_size)
        # Attribute reads in a comprehension: faster than map(attrgetter) on CPython 3.11+.
        definitions = [item.legacy_definition for item in page] if legacy else [item.definition for item in page]
        result: dict[str, Any] = {key: definitions}
        if next_cursor:
            result["nextCursor"] = next_cursor
        if per_user and call.revision.result_type:
            # A list filtered by the caller's scopes must not be shared across tokens (every page of it).
            result["cacheScope"] = "private"
        return result

    # Tools.
    async def _tools_list(self, call: Call) -> dict[str, Any]:
        # Revisions before 2025-06-18 get tools without titles and output schemas.
        return self._list(call, "tools", "tools", legacy=not call.revision.structured_output)

    async def _tools_call(self, call: Call) -> dict[str, Any]:
        name = _require_str(call.params, "name", "tools/call")
        tool = self.registry.get("tools", name)
        if tool is None:
            raise invalid_params(f"Unknown tool: {name}")
        if tool.scopes:
            check_scopes(tool.scopes, call.request, f"tool '{name}'")
        if tool.task and self.tasks is not None:
            return await self.tasks.call_tool(tool, call)
        context = self.context(call) if tool.arguments.needs_context else None
        return await tool.run(call.params.get("arguments"), context, structured=call.revision.structured_output)

    # Resources.
    async def _resources_list(self, call: Call) -> dict[str, Any]:
        return self._list(call, "resources", "resources")

    async def _templates_list(self, call: Call) -> dict[str, Any]:
        return self._list(call, "resourceTemplates", "templates")

    async def read_resource(self, uri: str, call: Call) -> list[dict[str, Any]]:
        """Read `uri` for `call`; its scopes are checked against the call's request (a tool's too)."""
        resource = self.registry.get("resources", uri)
        if resource is not None:
            if resource.scopes:
                check_scopes(resource.scopes, call.request, f"resource '{uri}'")
            context = self.context(call) if resource.arguments.needs_context else None
            return await resource.read(context)
        for template in self.registry.snapshot("templates"):
            params = template.match(uri)
            if params is not None:
                if template.scopes:
                    check_scopes(template.scopes, call.request, f"resource '{uri}'")
                context = self.context(call) if template.arguments.needs_context else None
                return await template.read(uri, params, context)
        raise MCPError(call.revision.resource_not_found_code, f"Resource not found: {uri}", {"uri": uri})

    async def _resources_read(self, call: Call) -> dict[str, Any]:
        uri = _require_str(call.params, "uri", "resources/read")
        return {"contents": await self.read_resource(uri, call)}

    async def _subscribe(self, call: Call) -> dict[str, Any]:
        uri = _require_str(call.params, "uri", "resources/subscribe")
        session = call.session
        if session is None:
            return {}
        if call.sessions is None:
            session.subscribe(uri)
        elif await call.sessions.subscribe(session.session_id, uri):
            session.subscriptions.add(uri)  # what this call (or channel) holds sees it too
        return {}

    async def _unsubscribe(self, call: Call) -> dict[str, Any]:
        uri = _require_str(call.params, "uri", "resources/unsubscribe")
        if call.session is not None:
            if call.sessions is not None:
                await call.sessions.unsubscribe(call.session.session_id, uri)
            call.session.subscriptions.discard(uri)
        return {}

    async def _listen(self, call: Call) -> dict[str, Any]:
        """`subscriptions/listen` (protocol/listen.py), with what the server has now."""
        return await listen(call, self.hub, self.tasks, self.server.keepalive_interval)

    # Prompts.
    async def _prompts_list(self, call: Call) -> dict[str, Any]:
        return self._list(call, "prompts", "prompts")

    async def _prompts_get(self, call: Call) -> dict[str, Any]:
        name = _require_str(call.params, "name", "prompts/get")
        prompt = self.registry.get("prompts", name)
        if prompt is None:
            raise invalid_params(f"Unknown prompt: {name}")
        if prompt.scopes:
            check_scopes(prompt.scopes, call.request, f"prompt '{name}'")
        context = self.context(call) if prompt.arguments.needs_context else None
        try:
            return await prompt.render(call.params.get("arguments"), context)
        except ValueError as exc:
            raise MCPError(INTERNAL_ERROR, f"Prompt {name} returned an unusable value: {exc}") from exc

    # Completion.
    async def _complete(self, call: Call) -> dict[str, Any]:
        handler = self.registry.completion
        assert handler is not None
        ref = call.params.get("ref")
        argument = call.params.get("argument")
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise invalid_params("Invalid params: completion/complete needs `ref` and `argument` objects")
        self._check_completion_ref(call, ref)
        context_arg = call.params.get("context")
        arguments = context_arg.get("arguments", {}) if isinstance(context_arg, dict) else {}
        value = await handler.call(ref, argument, arguments, self.context(call))
        if isinstance(value, dict) and "values" in value:
            completion = dict(value)
        else:
            values = [str(v) for v in (value or [])]
            completion = {"values": values[:100], "total": len(values), "hasMore": len(values) > 100}
        return {"completion": completion}

    def _check_completion_ref(self, call: Call, ref: dict[str, Any]) -> None:
        # The values offered may be as private as the prompt or template itself (file names, ids).
        prompt = ref.get("type") == "ref/prompt"
        key = ref.get("name" if prompt else "uri")
        for kind in ("prompts",) if prompt else ("templates", "resources"):
            target = self.registry.get(kind, key) if isinstance(key, str) else None
            if target is not None and target.scopes:
                check_scopes(target.scopes, call.request, f"completion of {kind[:-1]} '{key}'")


def _bad_meta(message: str) -> MCPError:
    # A request missing its required `_meta` fields is malformed: 400 on HTTP.
    return MCPError(INVALID_PARAMS, message, http_status=400)
