"""The `Context` a tool, resource or prompt function receives when it asks for one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mcp_asgi.protocol.dispatch import LEVEL_RANK, LOG_LEVELS
from mcp_asgi.protocol.jsonrpc import INVALID_REQUEST, MCPError, notification
from mcp_asgi.protocol.mrtr import Elicit, InputRequired, InputSpec, ListRoots, Sample, missing_capability

if TYPE_CHECKING:
    from starlette.requests import Request

    from mcp_asgi.auth.tokens import AccessToken
    from mcp_asgi.protocol.answers import ElicitationResult, SamplingResult
    from mcp_asgi.protocol.dispatch import Call
    from mcp_asgi.server import MCPServer


class Context:
    """What a function can know and do during one MCP request.

    Declare a parameter annotated `Context` (any name) to get one; it is not part
    of the tool's input schema.
    """

    # Inside a task (mcp_asgi/tasks/): where input requests and progress go instead of the request.
    _task: Any = None
    # Set by the tasks runtime on a `task_start="manual"` call that may become a task.
    _may_run_as_task: bool = False

    def __init__(self, server: MCPServer, call: Call) -> None:
        self._server = server
        self._call = call
        # Read on the event loop: sync tools run in a worker thread, where the loop's run is unknown.
        self._lifespan_state = server.lifespan_state

    # What the request is.
    @property
    def request(self) -> Request | None:
        """The Starlette `Request` of this MCP call (`None` over stdio)."""
        return self._call.request

    @property
    def access_token(self) -> AccessToken | None:
        """The verified token of this request under `auth=BearerAuth(...)`; None otherwise (and over stdio).

        Its user is `ctx.request.user` (`identity`, `display_name`) and its scopes
        `ctx.request.auth.scopes`, the Starlette way.
        """
        request = self._call.request
        return request.scope.get("mcp_asgi.access_token") if request is not None else None

    @property
    def app(self) -> Any:
        """The ASGI app that mounted the MCP app (the MCP app itself when standalone)."""
        return self._call.host_app

    @property
    def server(self) -> MCPServer:
        return self._server

    @property
    def lifespan_context(self) -> dict[str, Any]:
        """What the server's own `lifespan=` yielded."""
        return self._lifespan_state

    @property
    def request_id(self) -> Any:
        return self._call.request_id

    @property
    def protocol_version(self) -> str:
        return self._call.revision.version

    @property
    def session_id(self) -> str | None:
        session = self._call.session
        return session.session_id if session is not None else None

    @property
    def client_info(self) -> dict[str, Any] | None:
        return self._call.client_info

    @property
    def client_capabilities(self) -> dict[str, Any]:
        return self._call.client_capabilities

    @property
    def meta(self) -> dict[str, Any]:
        return self._call.meta

    @property
    def task_id(self) -> str | None:
        """The id of the task this call runs as (the tasks extension), else None."""
        return self._task.task_id if self._task is not None else None

    def run_as_task(self) -> bool:
        """Finish this call as a task (`@mcp.tool(task=..., task_start="manual")`); see docs/tasks.md.

        When the client declared the tasks extension the request is answered at once with a
        task handle and the function runs again from the start inside the task, with the input
        answers gathered so far (so the code before this call should be cheap and repeatable).
        Returns True when already running as a task, False when this call cannot become one
        (the client did not declare the extension, a 2025 session, a tool without `task`).
        """
        if self._task is not None:
            return True
        if not self._may_run_as_task:
            return False
        from mcp_asgi.tasks.methods import RunAsTask

        raise RunAsTask()

    # What the function can send back while it runs.
    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Send `notifications/progress` if the client asked for progress on this request.

        Inside a task it sets the task's `statusMessage` instead (the message, else "progress/total").
        """
        if self._task is not None:
            await self._task.progress(progress, total, message)
            return
        token = self._call.meta.get("progressToken")
        if token is None or self._call.send is None:
            return
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self._call.send(notification("notifications/progress", params))

    async def log(self, level: str, message: Any, *, logger_name: str | None = None) -> None:
        """Send `notifications/message` at `level`, if the client opted in to that level."""
        if level not in LEVEL_RANK:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}; got {level!r}")
        threshold = self._call.log_level
        if threshold is None or self._call.send is None or LEVEL_RANK[level] < LEVEL_RANK[threshold]:
            return
        params: dict[str, Any] = {"level": level, "data": message}
        if logger_name is not None:
            params["logger"] = logger_name
        await self._call.send(notification("notifications/message", params))

    async def debug(self, message: Any, *, logger_name: str | None = None) -> None:
        await self.log("debug", message, logger_name=logger_name)

    async def info(self, message: Any, *, logger_name: str | None = None) -> None:
        await self.log("info", message, logger_name=logger_name)

    async def warning(self, message: Any, *, logger_name: str | None = None) -> None:
        await self.log("warning", message, logger_name=logger_name)

    async def error(self, message: Any, *, logger_name: str | None = None) -> None:
        await self.log("error", message, logger_name=logger_name)

    async def close_sse_stream(self) -> None:
        """Close this call's HTTP response now and keep running; the client resumes for the rest.

        On 2025-11-25 sessions the reply becomes an SSE stream (if it is not yet) whose
        priming event tells the client to reconnect after the `retry` interval with
        `GET` + `Last-Event-ID`; later messages and the result wait for it there. On
        other revisions, and for JSON-only endpoints, this does nothing.
        """
        if self._call.close_stream is not None:
            await self._call.close_stream()

    async def read_resource(self, uri: str) -> list[dict[str, Any]]:
        """Read one of this server's resources; returns its contents blocks."""
        return await self._server._core.read_resource(uri, self._call)

    # Asking the client: elicitation, sampling, roots. One API for both protocol generations.
    async def elicit(self, message: str, schema: Any = None, *, key: str | None = None) -> ElicitationResult:
        """Ask the user for input shaped by `schema` (a JSON Schema dict or a pydantic model)."""
        return await self.ask(Elicit(message, schema), key=key)

    async def sample(self, messages: Any, *, key: str | None = None, **options: Any) -> SamplingResult:
        """Ask the client's LLM for a completion; `messages` is a string or a list of messages."""
        return await self.ask(Sample(messages, **options), key=key)

    async def list_roots(self, *, key: str | None = None) -> list[dict[str, Any]]:
        """The client's roots (directories it shares)."""
        return await self.ask(ListRoots(), key=key)

    async def ask(self, spec: InputSpec, *, key: str | None = None) -> Any:
        if key is None:
            self._call.state.asked += 1
            key = f"{spec.capability}_{self._call.state.asked}"
        return (await self.ask_all({key: spec}))[key]

    async def ask_all(self, specs: dict[str, InputSpec]) -> dict[str, Any]:
        """Ask several things at once; on 2026-07-28 they travel in one InputRequiredResult.

        `specs` maps your keys to `Elicit(...)`, `Sample(...)` or `ListRoots()`. Inside a task
        the task waits in `input_required` until the client answers with `tasks/update`.
        """
        call = self._call
        capabilities = call.client_capabilities
        for spec in specs.values():
            if spec.capability not in capabilities:
                raise missing_capability(spec.capability, spec.method)
        if self._task is not None:
            return await self._task.ask_all(specs)
        results: dict[str, Any] = {}
        if call.revision.stateless:
            missing: dict[str, dict[str, Any]] = {}
            for key, spec in specs.items():
                answer = call.state.inputs.get(key)
                parsed = spec.parse(answer) if answer is not None else None
                if parsed is None:
                    missing[key] = spec.request()
                else:
                    call.state.consumed[key] = answer
                    results[key] = parsed
            if missing:
                raise InputRequired(missing)
            return results
        if call.request_client is None:
            raise MCPError(INVALID_REQUEST, "This transport cannot send requests to the client")
        for key, spec in specs.items():
            answer = await call.request_client(spec.method, spec.params)
            parsed = spec.parse(answer)
            if parsed is None:
                raise MCPError(INVALID_REQUEST, f"The client's answer to {spec.method} is malformed")
            results[key] = parsed
        return results
