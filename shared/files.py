"""Attached files as the rest of Parley sees them: their public ids, the reference a
message holds in place of the bytes, and the reader the provider adapters resolve
references with at request time.

A user message with attachments is stored (log entry, window) as content blocks: one
reference per file, in the order attached, then the text, as Claude reads best
(images and documents before the question). A reference carries the file's id and the
facts a reader needs (name, media type, size, token estimate), never its bytes.
"""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db import reading
from shared.model.attachments import Attachment
from shared.models import File
from shared.storage import LogStore

PREFIX = "file_"
# Bytes of recently sent files kept per process: a file is immutable, and every turn of a
# conversation sends the attachments still in its window again.
CACHE_BYTES = 64 * 1024 * 1024


def public_id(file_id: uuid.UUID) -> str:
    return f"{PREFIX}{file_id.hex}"


def parse_file_id(raw: object) -> uuid.UUID | None:
    """The row id of a public id; None for anything that is not one."""
    if not isinstance(raw, str) or not raw.startswith(PREFIX) or len(raw) != len(PREFIX) + 32:
        return None
    try:
        return uuid.UUID(hex=raw[len(PREFIX):])
    except ValueError:
        return None


def file_reference(row: File) -> dict:
    return {"type": row.kind, "file_id": public_id(row.id), "name": row.name, "media_type": row.media_type,
            "size_bytes": row.size_bytes, "token_estimate": row.token_estimate}


def message_content(text: str, rows: list[File]) -> str | list[dict]:
    """A user message as stored: the plain string without attachments (as before), else
    the files' references followed by the text."""
    if not rows:
        return text
    return [*(file_reference(row) for row in rows), {"type": "text", "text": text}]


def user_content(sessions: sessionmaker[Session], user_id: uuid.UUID, text: str,
                 attachment_ids: list[str] | tuple[str, ...]) -> str | list[dict]:
    """The content of a job's user message, from its request's text and attachment ids.
    A file deleted since the submit (forced) is left out here and named in a text note
    by the provider adapter, as any reference to a deleted file is."""
    if not attachment_ids:
        return text
    ids = [parse_file_id(raw) for raw in attachment_ids]
    with reading(sessions) as session:
        rows = {row.id: row for row in session.scalars(
            select(File).where(File.id.in_([i for i in ids if i]), File.user_id == user_id))}
    content = [file_reference(rows[i]) if i in rows else
               {"type": "text", "text": f"[Attachment {raw} was deleted before this message was sent.]"}
               for i, raw in zip(ids, attachment_ids)]
    return [*content, {"type": "text", "text": text}]


class FileResolver:
    """The provider adapters' AttachmentSource: a referenced file's row and bytes."""

    def __init__(self, sessions: sessionmaker[Session], store: LogStore, cache_bytes: int = CACHE_BYTES):
        self.sessions, self.store, self.cache_bytes = sessions, store, cache_bytes
        self._cache: OrderedDict[uuid.UUID, bytes] = OrderedDict()
        self._cached, self._lock = 0, threading.Lock()

    def load(self, file_id: str) -> Attachment | None:
        row_id = parse_file_id(file_id)
        if row_id is None:
            return None
        with reading(self.sessions) as session:  # the row first: a deleted file is gone even if its bytes are cached
            row = session.get(File, row_id)
            if row is None:
                return None
            facts = (row.name, row.media_type, row.kind, row.storage_key, row.anthropic_file_id)
        name, media_type, kind, key, anthropic_id = facts
        data = self._cached_bytes(row_id)
        if data is None:
            data = self.store.get_bytes(key)
            if data is None:
                return None
            self._keep(row_id, data)
        return Attachment(file_id, name, media_type, kind, data, anthropic_id)

    def remember_anthropic_id(self, file_id: str, anthropic_file_id: str) -> None:
        row_id = parse_file_id(file_id)
        with self.sessions.begin() as session:
            session.execute(update(File).where(File.id == row_id, File.anthropic_file_id.is_(None))
                            .values(anthropic_file_id=anthropic_file_id))

    def _cached_bytes(self, row_id: uuid.UUID) -> bytes | None:
        with self._lock:
            data = self._cache.get(row_id)
            if data is not None:
                self._cache.move_to_end(row_id)
            return data

    def _keep(self, row_id: uuid.UUID, data: bytes) -> None:
        if len(data) > self.cache_bytes // 4:
            return
        with self._lock:
            if row_id in self._cache:
                return
            self._cache[row_id] = data
            self._cached += len(data)
            while self._cached > self.cache_bytes:
                _, dropped = self._cache.popitem(last=False)
                self._cached -= len(dropped)


def described_text(content: str | list[dict]) -> str:
    """A message as plain text (for a summary prompt): its text, each attachment named."""
    if isinstance(content, str):
        return content
    parts = [f"[{block['type']}: {block.get('name') or block['file_id']}]" if "file_id" in block
             else block.get("text", "") for block in content if "file_id" in block or block.get("type") == "text"]
    return "\n".join(part for part in parts if part)
