"""Attachments at request time: a message's Parley file references
({"type": "image" | "document", "file_id": "file_…", ...}, see shared/files.py) become
the provider's own blocks, with the bytes read from object storage only now.

Both providers start from the Messages API's shape (`with_attachments`); Bedrock's
Converse then takes those blocks as its image and document blocks (`converse_media`).
A file deleted (forced) since its message was sent becomes a short text note, so the
conversation goes on and the model is told what is missing.
"""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Callable, Protocol

FILES_API_BETA = "files-api-2025-04-14"
_FILE_SOURCE = "file"


@dataclass(frozen=True)
class Attachment:
    file_id: str  # Parley's public id
    name: str
    media_type: str
    kind: str  # image or document
    data: bytes
    anthropic_file_id: str | None = None


class AttachmentSource(Protocol):
    """Reads a referenced file (shared/files.py FileResolver); None if it is gone."""
    def load(self, file_id: str) -> Attachment | None: ...
    def remember_anthropic_id(self, file_id: str, anthropic_file_id: str) -> None: ...


def is_file_reference(block: object) -> bool:
    return isinstance(block, dict) and block.get("type") in ("image", "document") and "file_id" in block


def with_attachments(messages: list[dict], source: AttachmentSource | None,
                     upload: Callable[[Attachment], str] | None = None) -> list[dict]:
    """`messages` with each file reference resolved to a Messages API block; unchanged
    (the same list) when none holds one. `upload` (ANTHROPIC_FILES_API) sends an image or
    PDF to the Files API once and returns its id; the id is kept for the next request."""
    if not any(isinstance(m["content"], list) and any(map(is_file_reference, m["content"])) for m in messages):
        return messages
    return [{**m, "content": [_resolved(b, source, upload) if is_file_reference(b) else b for b in m["content"]]}
            if isinstance(m["content"], list) else m for m in messages]


def uses_files_api(messages: list[dict]) -> bool:
    return any(isinstance(m["content"], list) and any(
        isinstance(b, dict) and (b.get("source") or {}).get("type") == _FILE_SOURCE for b in m["content"])
        for m in messages)


def _resolved(reference: dict, source: AttachmentSource | None, upload) -> dict:
    found = source.load(reference["file_id"]) if source is not None else None
    if found is None:
        return {"type": "text", "text": f"[Attachment {reference.get('name') or reference['file_id']} "
                                        f"({reference['file_id']}) was deleted and is no longer available.]"}
    if found.kind == "document" and found.media_type != "application/pdf":  # text: sent as text, never uploaded
        return {"type": "document", "title": found.name,
                "source": {"type": "text", "media_type": "text/plain", "data": found.data.decode("utf-8")}}
    if upload is not None:
        file_id = found.anthropic_file_id
        if file_id is None:
            file_id = upload(found)
            source.remember_anthropic_id(found.file_id, file_id)
        block_source = {"type": _FILE_SOURCE, "file_id": file_id}
    else:
        block_source = {"type": "base64", "media_type": found.media_type,
                        "data": base64.b64encode(found.data).decode("ascii")}
    if found.kind == "image":
        return {"type": "image", "source": block_source}
    return {"type": "document", "title": found.name, "source": block_source}


# Converse's document formats for text, by the file name's extension; anything else is txt.
_TEXT_FORMATS = {".csv": "csv", ".md": "md", ".markdown": "md"}


def converse_media(block: dict) -> dict | None:
    """A resolved image or document block (Messages API shape) as Converse's block, the
    bytes raw (boto3 encodes them); None for any other block."""
    kind, source = block.get("type"), block.get("source") or {}
    if kind == "image" and source.get("type") == "base64":
        return {"image": {"format": source["media_type"].split("/", 1)[1],
                          "source": {"bytes": base64.b64decode(source["data"])}}}
    if kind != "document":
        return None
    title = block.get("title") or "document"
    if source.get("type") == "base64":
        return {"document": {"format": "pdf", "name": converse_name(title),
                             "source": {"bytes": base64.b64decode(source["data"])}}}
    if source.get("type") == "text":
        return {"document": {"format": _TEXT_FORMATS.get(PurePosixPath(title).suffix.lower(), "txt"),
                             "name": converse_name(title), "source": {"bytes": source["data"].encode("utf-8")}}}
    return None


def converse_name(name: str) -> str:
    """A document name Converse accepts: letters, digits, hyphens, parentheses, square
    brackets and single spaces (DocumentBlock.name); the extension's dot becomes a space."""
    cleaned = re.sub(r"[^A-Za-z0-9\-\(\)\[\] ]", " ", name)
    return re.sub(r"\s+", " ", cleaned).strip()[:200] or "document"
