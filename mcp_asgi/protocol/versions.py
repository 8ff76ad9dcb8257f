"""What each protocol revision allows, as data.

Handlers are written once; everything that differs between revisions (which
methods exist, whether there is a handshake and a session, how results are
shaped, which headers are required) is read from the `Revision` records here.
"""

from __future__ import annotations

from typing import Any

from mcp_asgi.protocol.jsonrpc import INVALID_PARAMS, RESOURCE_NOT_FOUND

MODERN = "2026-07-28"
LATEST_LEGACY = "2025-11-25"

_COMMON = frozenset(
    {
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "prompts/list",
        "prompts/get",
        "completion/complete",
    }
)
_LEGACY_ONLY = frozenset({"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})
_MODERN_ONLY = frozenset({"server/discover", "subscriptions/listen"})
# The io.modelcontextprotocol/tasks extension (2026-07-28 only; `tasks/result` and `tasks/list` are gone).
TASK_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})

# Results of these methods carry `ttlMs`/`cacheScope` on revisions with caching hints.
CACHEABLE_METHODS = frozenset(
    {"server/discover", "tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"}
)
# Methods whose Streamable HTTP request must carry `Mcp-Name`, and the param it mirrors.
NAMED_METHODS = {
    "tools/call": "name",
    "prompts/get": "name",
    "resources/read": "uri",
    **{method: "taskId" for method in TASK_METHODS},
}


# Not a dataclass: `import mcp_asgi` loads this module, and creating a dataclass exec()s the
# source of its methods (ten of them were a quarter of our import cost). The five records below
# are the only ones, so identity is their equality.
class Revision:
    """What one protocol revision allows; one record per revision, in `REVISIONS`."""

    __slots__ = (
        "version",
        "stateless",
        "methods",
        "result_type",
        "structured_output",
        "resource_not_found_code",
        "sse_event_ids",
    )

    def __init__(
        self,
        *,
        version: str,
        stateless: bool,
        methods: frozenset[str],
        result_type: bool,
        structured_output: bool,
        resource_not_found_code: int,
        sse_event_ids: bool,
    ) -> None:
        self.version = version
        # Modern revisions carry version and capabilities in every request's `_meta` (and, on
        # Streamable HTTP, mirror them in headers); legacy ones negotiate once and keep a session.
        self.stateless = stateless
        self.methods = methods
        # Results carry `resultType` and the cacheable ones `ttlMs`/`cacheScope`.
        self.result_type = result_type
        # What 2025-06-18 added: tools' `outputSchema` and `structuredContent`, titles, icons.
        self.structured_output = structured_output
        self.resource_not_found_code = resource_not_found_code
        # Streamable HTTP: SSE streams open with a priming event id and are resumable (2025-11-25).
        self.sse_event_ids = sse_event_ids

    def replace(self, **changes: Any) -> Revision:
        """A copy of this record with `changes` (`dataclasses.replace` for this class)."""
        return Revision(**{**{name: getattr(self, name) for name in self.__slots__}, **changes})

    def __repr__(self) -> str:
        return f"Revision({self.version!r})"

    def allows(self, method: str) -> bool:
        return method in self.methods


_LEGACY = Revision(
    version="2024-11-05",  # spoken by clients of the legacy HTTP+SSE transport
    stateless=False,
    methods=_COMMON | _LEGACY_ONLY,
    result_type=False,
    structured_output=False,
    resource_not_found_code=RESOURCE_NOT_FOUND,
    sse_event_ids=False,
)

REVISIONS: dict[str, Revision] = {
    MODERN: Revision(
        version=MODERN,
        stateless=True,
        methods=_COMMON | _MODERN_ONLY | TASK_METHODS,
        result_type=True,
        structured_output=True,
        resource_not_found_code=INVALID_PARAMS,
        sse_event_ids=False,
    ),
    "2025-11-25": _LEGACY.replace(version="2025-11-25", structured_output=True, sse_event_ids=True),
    "2025-06-18": _LEGACY.replace(version="2025-06-18", structured_output=True),
    "2025-03-26": _LEGACY.replace(version="2025-03-26"),
    "2024-11-05": _LEGACY,
}

SUPPORTED_VERSIONS: tuple[str, ...] = tuple(REVISIONS)
LEGACY_VERSIONS: tuple[str, ...] = tuple(v for v, r in REVISIONS.items() if not r.stateless)
MODERN_VERSIONS: tuple[str, ...] = tuple(v for v, r in REVISIONS.items() if r.stateless)


def negotiate(requested: object) -> Revision:
    """The legacy revision an `initialize` settles on: the client's if we speak it, else our latest."""
    if isinstance(requested, str):
        revision = REVISIONS.get(requested)
        if revision is not None and not revision.stateless:
            return revision
    return REVISIONS[LATEST_LEGACY]
