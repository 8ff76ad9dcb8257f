"""What a server offers (tools, resources, templates, prompts, completion), as the core reads it.

The server fills it; the core only reads it. Sync tools run in worker threads and may
add or remove tools while the event loop lists them, so every change and every
listing takes one lock: a listing is a snapshot, never a live view of a dict that
another thread resizes ("dictionary changed size during iteration").

Items are the component objects (`Tool`, `Resource`, ...); the core uses them by
their attributes only, so this module imports nothing above `protocol/`.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

Kind = Literal["tools", "resources", "templates", "prompts"]


class Registry:
    """Tables of components by name (tools, prompts) or URI (resources, templates), safe across threads."""

    __slots__ = ("_lock", "_tables", "_scoped", "completion")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, Any]] = {"tools": {}, "resources": {}, "templates": {}, "prompts": {}}
        # Keys of the entries that require OAuth scopes: a list with none skips the per-request filter.
        self._scoped: dict[str, set[str]] = {kind: set() for kind in self._tables}
        # The `completion/complete` handler, or None (then the method does not exist).
        self.completion: Any = None

    def add(self, kind: Kind, key: str, item: Any) -> None:
        with self._lock:
            self._tables[kind][key] = item
            if getattr(item, "scopes", None):
                self._scoped[kind].add(key)
            else:
                self._scoped[kind].discard(key)

    def remove(self, kind: Kind, key: str) -> bool:
        """Drop one entry; False if there was none."""
        with self._lock:
            self._scoped[kind].discard(key)
            return self._tables[kind].pop(key, None) is not None

    def get(self, kind: Kind, key: str) -> Any:
        # A single dict lookup is atomic under the GIL and never sees a half-done change.
        return self._tables[kind].get(key)

    def has_scoped(self, kind: Kind) -> bool:
        """Whether any entry of `kind` requires scopes."""
        return bool(self._scoped[kind])

    def snapshot(self, kind: Kind) -> list[Any]:
        """The entries of `kind` in registration order, as they are at this moment."""
        with self._lock:
            return list(self._tables[kind].values())

    def table(self, kind: Kind) -> dict[str, Any]:
        """A copy of one table, keyed by name or URI."""
        with self._lock:
            return dict(self._tables[kind])
