"""Requests the server makes of the client (elicitation, sampling, roots), for both generations.

On 2026-07-28 they follow Multi Round-Trip Requests: the call ends with an
`InputRequiredResult`, the client retries with `inputResponses`, and what the
server already learned rides along in a signed `requestState`, so any worker
can finish the call. On 2025 sessions the same `ctx.elicit(...)` sends a real
JSON-RPC request on the call's stream and awaits the client's answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

import pydantic

from mcp_asgi.protocol.jsonrpc import MISSING_CLIENT_CAPABILITY, MCPError, invalid_params

if TYPE_CHECKING:
    from mcp_asgi.protocol.answers import ElicitationResult, SamplingResult

# Methods whose results may be an InputRequiredResult.
MRTR_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
STATE_SECRET_ENV = "MCP_ASGI_STATE_SECRET"


class InputRequired(Exception):
    """Raised inside a call that needs client input it does not have yet (2026-07-28)."""

    def __init__(self, requests: dict[str, dict[str, Any]]) -> None:
        super().__init__(f"input required: {', '.join(requests)}")
        self.requests = requests


class InputSpec:
    """One request for client input: what to send, which capability it needs, how to read the answer."""

    method: str = ""
    capability: str = ""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def request(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params}

    def parse(self, answer: Any) -> Any:
        """The typed answer, or None when `answer` is not a valid response to this request."""
        raise NotImplementedError


class Elicit(InputSpec):
    method = "elicitation/create"
    capability = "elicitation"

    def __init__(self, message: str, schema: Any = None) -> None:
        self.model: type[pydantic.BaseModel] | None = None
        if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
            self.model = schema
            requested = schema.model_json_schema()
            requested.pop("title", None)
        elif schema is None:
            requested = {"type": "object", "properties": {}}
        else:
            requested = dict(schema)
        super().__init__({"mode": "form", "message": message, "requestedSchema": requested})

    def parse(self, answer: Any) -> ElicitationResult | None:
        from mcp_asgi.protocol.answers import ElicitationResult

        if not isinstance(answer, dict) or answer.get("action") not in ("accept", "decline", "cancel"):
            return None
        content = answer.get("content")
        if answer["action"] != "accept":
            return ElicitationResult(answer["action"])
        if not isinstance(content, dict):
            return None
        data = None
        if self.model is not None:
            try:
                data = self.model.model_validate(content)
            except pydantic.ValidationError:
                return None
        return ElicitationResult("accept", content, data)


class Sample(InputSpec):
    method = "sampling/createMessage"
    capability = "sampling"

    def __init__(self, messages: Any, *, max_tokens: int = 1000, **options: Any) -> None:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": {"type": "text", "text": messages}}]
        params: dict[str, Any] = {"messages": list(messages), "maxTokens": max_tokens}
        names = {
            "system_prompt": "systemPrompt",
            "temperature": "temperature",
            "stop_sequences": "stopSequences",
            "model_preferences": "modelPreferences",
            "include_context": "includeContext",
            "metadata": "metadata",
            "tools": "tools",
            "tool_choice": "toolChoice",
        }
        for key, value in options.items():
            if key not in names:
                raise TypeError(f"sample() got an unexpected option {key!r}; known: {', '.join(names)}")
            if value is not None:
                params[names[key]] = value
        super().__init__(params)

    def parse(self, answer: Any) -> SamplingResult | None:
        from mcp_asgi.protocol.answers import SamplingResult

        if not isinstance(answer, dict) or "content" not in answer or not isinstance(answer.get("role"), str):
            return None
        return SamplingResult(answer["role"], answer["content"], answer.get("model"), answer.get("stopReason"), answer)


class ListRoots(InputSpec):
    method = "roots/list"
    capability = "roots"

    def __init__(self) -> None:
        super().__init__({})

    def parse(self, answer: Any) -> list[dict[str, Any]] | None:
        if not isinstance(answer, dict) or not isinstance(answer.get("roots"), list):
            return None
        return answer["roots"]


def missing_capability(capability: str, method: str) -> MCPError:
    return MCPError(
        MISSING_CLIENT_CAPABILITY,
        f"Missing required client capability: {method} needs the client to declare `{capability}`",
        {"requiredCapabilities": {capability: {}}},
        http_status=400,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:32]


class RequestStateCodec:
    """Seals what a call learned so far into `requestState`: HMAC-signed, bound to the call, expiring.

    Several workers can finish each other's calls when they share `secret`
    (`MCPServer(state_secret=...)` or the MCP_ASGI_STATE_SECRET variable).
    """

    def __init__(self, secret: str | bytes | None = None, *, ttl: float = 900.0) -> None:
        if secret is None:
            secret = os.environ.get(STATE_SECRET_ENV) or secrets.token_bytes(32)
        self._key = secret.encode() if isinstance(secret, str) else secret
        self.ttl = ttl

    def seal(self, binding: dict[str, Any], responses: dict[str, Any]) -> str:
        payload = {"b": binding, "r": responses, "exp": int(time.time() + self.ttl)}
        body = _b64(json.dumps(payload, separators=(",", ":"), default=str).encode())
        mac = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        return f"{body}.{mac}"

    def open(self, token: Any, binding: dict[str, Any]) -> dict[str, Any]:
        """The responses sealed in `token`; -32602 if it was tampered with, expired or is for another call."""
        if not isinstance(token, str) or token.count(".") != 1:
            raise invalid_params("Invalid requestState: not a state this server issued")
        body, mac = token.split(".")
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            raise invalid_params("Invalid requestState: signature check failed (tampered, or another server's key)")
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            raise invalid_params("Invalid requestState: unreadable") from None
        if payload.get("exp", 0) < time.time():
            raise invalid_params("Invalid requestState: expired; call again without it")
        if payload.get("b") != binding:
            raise invalid_params("Invalid requestState: it belongs to a different request")
        responses = payload.get("r")
        return responses if isinstance(responses, dict) else {}
