"""Sessions of the 2025 revisions as plain data behind a store interface.

No task lives per session: answering a request loads the record, and a record
is all there is. A shared store (`mcp_asgi.redis.RedisSessionStore`) can replace
the in-memory one so that any worker answers any session. Stores hand out copies
and change records field by field (`update`, `subscribe`, `unsubscribe`), so two
workers changing one session never overwrite each other's changes.

Everything a client can make a record hold is bounded: what `initialize`
declares is copied in a trimmed form (`adopt_client`), subscriptions are
capped in number and URI length, and the store itself is capped in records.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from mcp_asgi.principal import same_principal
from mcp_asgi.protocol import limits
from mcp_asgi.protocol.jsonrpc import INVALID_PARAMS, MCPError

# The capabilities the server itself reads (presence checks before elicitation, sampling, roots),
# then the other ones the spec defines; kept in this order while the size budget lasts.
KNOWN_CAPABILITIES = ("elicitation", "sampling", "roots", "tasks", "experimental", "extensions")
# clientInfo fields worth keeping for `ctx.client_info`, with their length caps (characters).
CLIENT_INFO_FIELDS = {"name": 256, "version": 256, "title": 256, "description": 1024, "websiteUrl": 2048}
# Error code of a refusal for lack of capacity: JSON-RPC's range for implementation-defined server errors.
SERVER_BUSY = -32000
# The scalar fields `SessionStore.update` may change; subscriptions change through subscribe/unsubscribe.
UPDATABLE_FIELDS = frozenset({"protocol_version", "client_capabilities", "client_info", "log_level", "initialized"})


# Slots: a store holds up to `max_sessions` of these, and a per-instance __dict__ was a third of an
# idle session's memory.
@dataclass(slots=True)
class SessionRecord:
    """What a server keeps about one 2025 session: what `initialize` declared, and its state since."""

    session_id: str
    protocol_version: str | None = None
    client_capabilities: dict[str, Any] = field(default_factory=dict)
    client_info: dict[str, Any] | None = None
    # None until the client calls logging/setLevel.
    log_level: str | None = None
    subscriptions: set[str] = field(default_factory=set)
    initialized: bool = False
    created_at: float = field(default_factory=time.monotonic)
    last_active: float = field(default_factory=time.monotonic)
    # Who created the session (`mcp_asgi.principal.principal_of`); every later request must be them.
    principal: str | None = None

    # Limits on what a client can make a record hold; set them on the class to change them. Together
    # they keep a record under about 220 KB however hostile its client (real clients declare a few
    # hundred bytes and subscribe to a handful of URIs), which times `max_sessions` bounds the store.
    max_capabilities_bytes: ClassVar[int] = 4096
    max_capability_keys: ClassVar[int] = 32
    max_subscriptions: ClassVar[int] = limits.MAX_SUBSCRIPTIONS
    max_uri_length: ClassVar[int] = limits.MAX_URI_LENGTH

    def adopt_client(self, capabilities: Any, client_info: Any) -> None:
        """Record what `initialize` declared, trimmed to what the server uses and capped in size.

        A 4 MB `clientInfo` must not be held for the session's lifetime: only the
        `Implementation` strings are kept (truncated), and the capabilities only as
        far as `max_capabilities_bytes` of JSON allows.
        """
        limits = (self.max_capabilities_bytes, self.max_capability_keys)
        self.client_capabilities = trim_capabilities(capabilities, *limits)
        self.client_info = trim_client_info(client_info)

    def subscribe(self, uri: str) -> bool:
        """Add a `resources/subscribe` URI; False if already there. -32602 past the limits."""
        check_subscription_uri(uri)
        if uri in self.subscriptions:
            return False
        if len(self.subscriptions) >= self.max_subscriptions:
            raise too_many_subscriptions()
        self.subscriptions.add(uri)
        return True

    def copy(self) -> SessionRecord:
        """A copy whose changes (subscriptions included) never reach this record."""
        # Not dataclasses.replace: this runs on every request, and re-running __init__ costs 3x more.
        copy = object.__new__(type(self))
        copy.session_id = self.session_id
        copy.protocol_version = self.protocol_version
        copy.client_capabilities = self.client_capabilities
        copy.client_info = self.client_info
        copy.log_level = self.log_level
        copy.subscriptions = set(self.subscriptions)
        copy.initialized = self.initialized
        copy.created_at = self.created_at
        copy.last_active = self.last_active
        copy.principal = self.principal
        return copy


def check_subscription_uri(uri: str) -> None:
    """-32602 for a URI longer than `SessionRecord.max_uri_length`."""
    if len(uri) > SessionRecord.max_uri_length:
        raise MCPError(
            INVALID_PARAMS,
            f"Invalid params: a subscribed URI may be at most {SessionRecord.max_uri_length} characters",
        )


def too_many_subscriptions() -> MCPError:
    limit = SessionRecord.max_subscriptions
    return MCPError(
        INVALID_PARAMS,
        f"Invalid params: this session already has {limit} subscriptions, the most allowed; "
        "unsubscribe from some first",
    )


def check_update_fields(fields: dict[str, Any]) -> None:
    """TypeError for a field `update` may not change: a bug of the caller, not of the client."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise TypeError(f"SessionStore.update cannot change {sorted(unknown)}; it changes {sorted(UPDATABLE_FIELDS)}")


def trim_client_info(client_info: Any) -> dict[str, Any] | None:
    """The `Implementation` strings of a clientInfo, each truncated; icons and unknown keys dropped."""
    if not isinstance(client_info, dict):
        return None
    kept: dict[str, Any] = {}
    for key, limit in CLIENT_INFO_FIELDS.items():
        value = client_info.get(key)
        if isinstance(value, str):
            # A truncated URL is a wrong URL: drop it instead.
            if key != "websiteUrl" or len(value) <= limit:
                kept[key] = value[:limit]
    return kept


def trim_capabilities(capabilities: Any, max_bytes: int, max_keys: int) -> dict[str, Any]:
    """A bounded copy of declared client capabilities.

    Presence of a top-level key is what declares a capability, so a known key is
    always kept (as `{}` when its content does not fit the budget); other keys are
    kept while the budget lasts. Values are copied to a small depth, objects and
    scalars only, so no declaration can make the copy deep, wide or long.
    """
    if not isinstance(capabilities, dict):
        return {}
    order = [key for key in KNOWN_CAPABILITIES if key in capabilities]
    order += [key for key in capabilities if key not in KNOWN_CAPABILITIES][: max(0, max_keys - len(order))]
    kept: dict[str, Any] = {}
    budget = max_bytes
    for key in order:
        value = capabilities[key]
        if not isinstance(value, dict) or not isinstance(key, str) or len(key) > 128:
            continue
        copy = _bounded_copy(value, depth=4, width=max_keys)
        size = len(key) + len(json.dumps(copy, ensure_ascii=False)) + 4
        if size > budget:
            if key not in KNOWN_CAPABILITIES or budget < len(key) + 6:
                continue
            copy, size = {}, len(key) + 6
        kept[key] = copy
        budget -= size
    return kept


def _bounded_copy(value: dict[str, Any], depth: int, width: int) -> dict[str, Any]:
    """Objects down to `depth` levels, at most `width` keys each; booleans, numbers and short strings."""
    copy: dict[str, Any] = {}
    for key, item in value.items():
        if len(copy) >= width:
            break
        if not isinstance(key, str) or len(key) > 128:
            continue
        if isinstance(item, dict):
            copy[key] = _bounded_copy(item, depth - 1, width) if depth > 1 else {}
        elif isinstance(item, (bool, int, float)) or item is None:
            copy[key] = item
        elif isinstance(item, str) and len(item) <= 256:
            copy[key] = item
    return copy


def new_session_id() -> str:
    # Visible ASCII only, as the spec requires; 128 bits of randomness.
    return secrets.token_hex(16)


def session_limit_reached(limit: int) -> MCPError:
    """The refusal of a new session when the store is full: 503, existing sessions keep working."""
    return MCPError(
        SERVER_BUSY,
        f"Server busy: the limit of {limit} open sessions is reached; try again later",
        http_status=503,
    )


# `SessionStore.get` without a principal to check: any caller may read the record.
ANYONE: Any = object()


class SessionStore(Protocol):
    """Where session records live. All methods may be called from any worker.

    Records handed out are copies (or may be): a change is made through `update`,
    `subscribe` or `unsubscribe`, one field or one URI at a time, never by saving a
    whole record, so concurrent changes from several workers all land.

    A store that expires idle records only when they are read may also offer
    `async def sweep() -> int` (drop expired records now, return how many) and a
    `sweep_interval` in seconds: the server then calls it in the background while
    its lifespan runs. A store with its own TTL (Redis) needs neither.

    A shared store that cannot be reached raises `MCPError(-32000, ..., http_status=503)`
    within its timeout (`mcp_asgi.bus.backend_unavailable`).
    """

    async def create(self, record: SessionRecord) -> None:
        """Store a new record; raise `MCPError(..., http_status=503)` when no more sessions fit."""
        ...

    async def get(self, session_id: str, *, principal: Any = ANYONE) -> SessionRecord | None:
        """The record, or None if unknown, ended or expired; a read counts as activity.

        With `principal`, a record another principal created is None too, and the read does
        not count as its activity: a stolen session id can neither use a session nor keep it alive.
        """
        ...

    async def update(self, session_id: str, **fields: Any) -> bool:
        """Set the given `UPDATABLE_FIELDS` of a live session; False if it ended or expired."""
        ...

    async def subscribe(self, session_id: str, uri: str) -> bool:
        """Add a subscription; False if already there or the session is gone. -32602 past the limits."""
        ...

    async def unsubscribe(self, session_id: str, uri: str) -> bool:
        """Remove a subscription; False if it was not there."""
        ...

    async def subscribed(self, session_id: str, uri: str) -> bool:
        """Whether a live session subscribes to `uri` now; not activity (streams ask it per update)."""
        ...

    async def delete(self, session_id: str) -> bool:
        """End a session; False if it did not exist."""
        ...

    async def alive(self, session_id: str) -> bool:
        """Whether the session exists now (not ended, not expired); not activity.

        Optional: a request the server sent the client polls it while it waits, so a session
        that expires meanwhile fails it at once. Without it, only the request's timeout ends it.
        """
        ...


class InMemorySessionStore:
    """Sessions in this process's memory; idle ones expire after `idle_timeout` seconds.

    At most `max_sessions` records: past that, a new session is refused with 503
    (after reclaiming expired ones) and existing sessions are never evicted. Records
    are kept in order of last activity, so reclaiming the expired ones costs only
    as many steps as there are expired records, never a scan or a sort. `get` hands
    out copies, as a shared store must, so no caller can come to rely on changing
    the stored record in place.
    """

    def __init__(
        self,
        *,
        idle_timeout: float | None = 3600.0,
        max_sessions: int = 100_000,
        sweep_interval: float | None = None,
    ) -> None:
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError("`idle_timeout` must be a positive number of seconds, or None for no expiry")
        if max_sessions < 1:
            raise ValueError("`max_sessions` must be at least 1")
        if sweep_interval is not None and sweep_interval <= 0:
            raise ValueError("`sweep_interval` must be a positive number of seconds, or None for the default")
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        if sweep_interval is None and idle_timeout is not None:
            # Often enough that an idle session outlives its timeout by at most a quarter of it.
            sweep_interval = min(60.0, idle_timeout / 4)
        # None: nothing expires, so there is nothing to sweep.
        self.sweep_interval = sweep_interval
        # Least recently active first: `get` moves a record to the end.
        self._records: OrderedDict[str, SessionRecord] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    async def create(self, record: SessionRecord) -> None:
        if len(self._records) >= self.max_sessions:
            self._reclaim(time.monotonic())
            if len(self._records) >= self.max_sessions:
                raise session_limit_reached(self.max_sessions)
        if record.session_id in self._records:
            raise ValueError(f"session {record.session_id!r} already exists")
        stored = record.copy()
        stored.last_active = time.monotonic()
        self._records[record.session_id] = stored

    async def get(self, session_id: str, *, principal: Any = ANYONE) -> SessionRecord | None:
        record = self._live(session_id)
        if record is None:
            return None
        if principal is not ANYONE and not same_principal(record.principal, principal):
            return None
        record.last_active = time.monotonic()
        self._records.move_to_end(session_id)
        return record.copy()

    async def update(self, session_id: str, **fields: Any) -> bool:
        check_update_fields(fields)
        record = self._live(session_id)
        if record is None:
            return False
        for name, value in fields.items():
            setattr(record, name, value)
        return True

    async def subscribe(self, session_id: str, uri: str) -> bool:
        check_subscription_uri(uri)
        record = self._live(session_id)
        return record is not None and record.subscribe(uri)

    async def unsubscribe(self, session_id: str, uri: str) -> bool:
        record = self._live(session_id)
        if record is None or uri not in record.subscriptions:
            return False
        record.subscriptions.discard(uri)
        return True

    async def subscribed(self, session_id: str, uri: str) -> bool:
        record = self._live(session_id)
        return record is not None and uri in record.subscriptions

    async def delete(self, session_id: str) -> bool:
        return self._records.pop(session_id, None) is not None

    async def alive(self, session_id: str) -> bool:
        return self._live(session_id) is not None

    async def sweep(self) -> int:
        """Drop the expired records now; how many were dropped."""
        return self._reclaim(time.monotonic())

    def _live(self, session_id: str) -> SessionRecord | None:
        """The stored record unless it expired (then dropped); reading it here is not activity."""
        record = self._records.get(session_id)
        if record is not None and self._expired(record, time.monotonic()):
            del self._records[session_id]
            return None
        return record

    def _expired(self, record: SessionRecord, now: float) -> bool:
        return self.idle_timeout is not None and now - record.last_active > self.idle_timeout

    def _reclaim(self, now: float) -> int:
        dropped = 0
        while self._records:
            oldest = next(iter(self._records.values()))
            if not self._expired(oldest, now):
                break
            del self._records[oldest.session_id]
            dropped += 1
        return dropped
