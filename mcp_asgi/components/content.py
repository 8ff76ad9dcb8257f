"""Turning what user functions return into MCP content blocks."""

from __future__ import annotations

import base64
import mimetypes
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic
import pydantic_core

if TYPE_CHECKING:
    from pathlib import Path

_CONTENT_TYPES = frozenset({"text", "image", "audio", "resource", "resource_link"})

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"RIFF", "image/webp"),
    (b"ID3", "audio/mpeg"),
    (b"OggS", "audio/ogg"),
    (b"fLaC", "audio/flac"),
)


def _sniff(data: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            if magic == b"RIFF":
                return "audio/wav" if data[8:12] == b"WAVE" else "image/webp"
            return mime
    return None


class _Media:
    kind = ""
    default_mime = ""

    def __init__(
        self,
        data: bytes | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        mime_type: str | None = None,
        format: str | None = None,
    ) -> None:
        if (data is None) == (path is None):
            raise ValueError(f"{type(self).__name__} needs exactly one of `data` or `path`")
        self.data = data
        self.path: Path | None = None
        if path is not None:
            # Here, not at module level: pathlib is not among what `import mcp_asgi` needs.
            from pathlib import Path

            self.path = Path(path)
        if mime_type is None and format is not None:
            mime_type = f"{self.kind}/{format.lower()}"
        self.mime_type = mime_type

    def _bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def to_content(self) -> dict[str, Any]:
        raw = self._bytes()
        mime = self.mime_type
        if mime is None and self.path is not None:
            mime = mimetypes.guess_type(self.path.name)[0]
        mime = mime or _sniff(raw) or self.default_mime
        return {"type": self.kind, "data": base64.b64encode(raw).decode("ascii"), "mimeType": mime}


class Image(_Media):
    """An image a tool or prompt returns: `Image(data=png_bytes)` or `Image(path="chart.png")`."""

    kind = "image"
    default_mime = "image/png"


class Audio(_Media):
    """Audio a tool returns: `Audio(data=wav_bytes, format="wav")` or `Audio(path="clip.mp3")`."""

    kind = "audio"
    default_mime = "audio/wav"


@dataclass
class File:
    """A file returned as an embedded resource: `File(path="report.pdf")` or `File(data=b"...", name="x.bin")`."""

    data: bytes | None = None
    # os.PathLike rather than pathlib.Path, which `import mcp_asgi` does not load: the hint must
    # resolve at runtime for pydantic (a tool may return a model holding a File).
    path: str | os.PathLike[str] | None = None
    name: str | None = None
    mime_type: str | None = None

    def to_content(self) -> dict[str, Any]:
        from pathlib import Path

        if self.data is not None:
            raw = self.data
        elif self.path is not None:
            raw = Path(self.path).read_bytes()
        else:
            raise ValueError("File needs `data` or `path`")
        name = self.name or (Path(self.path).name if self.path is not None else "file")
        mime = self.mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return {
            "type": "resource",
            "resource": {
                "uri": f"file:///{name}",
                "mimeType": mime,
                "blob": base64.b64encode(raw).decode("ascii"),
            },
        }


def to_jsonable(value: Any) -> Any:
    """Plain JSON data for any value pydantic can serialize (models, dataclasses, datetimes...)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return pydantic_core.to_jsonable_python(value, fallback=str)


def to_json_text(value: Any) -> str:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json(by_alias=True, exclude_none=True)
    return pydantic_core.to_json(value, fallback=str).decode()


def _is_content_dict(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in _CONTENT_TYPES


def to_content(value: Any) -> list[dict[str, Any]]:
    """Content blocks for a return value: text, image, audio, resources, or JSON text."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, (Image, Audio, File)):
        return [value.to_content()]
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        mime = _sniff(raw)
        if mime is not None:
            kind = "audio" if mime.startswith("audio/") else "image"
            return [{"type": kind, "data": base64.b64encode(raw).decode("ascii"), "mimeType": mime}]
        return [File(data=raw, name="data.bin").to_content()]
    if _is_content_dict(value):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(_is_contentish(item) for item in value):
        blocks: list[dict[str, Any]] = []
        for item in value:
            blocks.extend(to_content(item))
        return blocks
    return [{"type": "text", "text": to_json_text(value)}]


def _is_contentish(value: Any) -> bool:
    return isinstance(value, (str, Image, Audio, File, bytes, bytearray)) or _is_content_dict(value)


def reads_files(value: Any, *, depth: int = 2) -> bool:
    """Whether turning `value` into content reads a file: media given by `path`, directly, in a list,
    or as the content of a `ToolResult` or prompt message. Such a conversion runs in a worker thread."""
    if isinstance(value, (_Media, File)):
        return value.path is not None and value.data is None
    if depth == 0:
        return False
    if isinstance(value, (list, tuple)):
        return any(reads_files(item, depth=depth - 1) for item in value)
    inner = value.get("content") if isinstance(value, dict) else getattr(value, "content", None)
    return inner is not None and reads_files(inner, depth=depth - 1)
