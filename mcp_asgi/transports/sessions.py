"""Sessions of the 2025 revisions as plain data behind a store interface.

No task lives per session: answering a request loads the record, and a record
is all there is. A shared store (Redis, later) can replace the in-memory one
so that any worker answers any session.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class SessionRecord:
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


def new_session_id() -> str:
    # Visible ASCII only, as the spec requires; 128 bits of randomness.
    return secrets.token_hex(16)


class SessionStore(Protocol):
    """Where session records live. All methods may be called from any worker."""

    async def create(self, record: SessionRecord) -> None: ...

    async def get(self, session_id: str) -> SessionRecord | None:
        """The record, or None if unknown, ended or expired."""
        ...

    async def save(self, record: SessionRecord) -> None: ...

    async def delete(self, session_id: str) -> bool:
        """End a session; False if it did not exist."""
        ...


class InMemorySessionStore:
    """Sessions in this process's memory; idle ones expire after `idle_timeout` seconds."""

    def __init__(self, *, idle_timeout: float | None = 3600.0, max_sessions: int = 100_000) -> None:
        self.idle_timeout = idle_timeout
        self.max_sessions = max_sessions
        self._records: dict[str, SessionRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    async def create(self, record: SessionRecord) -> None:
        if len(self._records) >= self.max_sessions:
            self._sweep()
        self._records[record.session_id] = record

    async def get(self, session_id: str) -> SessionRecord | None:
        record = self._records.get(session_id)
        if record is None:
            return None
        now = time.monotonic()
        if self.idle_timeout is not None and now - record.last_active > self.idle_timeout:
            del self._records[session_id]
            return None
        record.last_active = now
        return record

    async def save(self, record: SessionRecord) -> None:
        # The record handed out by get() is the stored object itself.
        self._records[record.session_id] = record

    async def delete(self, session_id: str) -> bool:
        return self._records.pop(session_id, None) is not None

    def _sweep(self) -> None:
        """Drop expired sessions; if still full, the least recently active ones."""
        now = time.monotonic()
        if self.idle_timeout is not None:
            for sid in [s for s, r in self._records.items() if now - r.last_active > self.idle_timeout]:
                del self._records[sid]
        overflow = len(self._records) - self.max_sessions + 1
        if overflow > 0:
            oldest = sorted(self._records.values(), key=lambda r: r.last_active)[:overflow]
            for record in oldest:
                del self._records[record.session_id]
