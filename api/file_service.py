"""What the file endpoints and the message submit do with attachments, apart from HTTP.

An upload is judged from its bytes (shared/media.py) before anything is stored; then the
bytes go to object storage under the owner's prefix and the row to PostgreSQL, the bytes
taken back if the row cannot be written. A message's attachments are recorded in
`message_files` with its job, which is how a file knows which windows still send it.
"""
from __future__ import annotations

import hashlib
import uuid
from pathlib import PurePosixPath

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from api.pages import newest_first
from shared.bootstrap import Services
from shared.files import parse_file_id, public_id
from shared.media import MediaRejected, inspect
from shared.models import File, MessageFile, User
from shared.refusals import Conflict, Invalid, NotFound, TooLarge, UnsupportedType
from shared.storage import file_key

MAX_NAME_CHARS = 255
# Conversations whose window may still send the file: a job that attached it is waiting or
# running, or a turn written by such a job (in its own conversation or copied into a fork,
# which keeps the job id) is at or after where its conversation's newest window starts.
_IN_USE = text("""
    SELECT j.conversation_id
      FROM message_files mf JOIN jobs j ON j.id = mf.job_id
     WHERE mf.file_id = :file_id AND j.status IN ('queued', 'running')
    UNION
    SELECT t.conversation_id
      FROM message_files mf
      JOIN turns t ON t.job_id = mf.job_id
      JOIN conversations c ON c.conversation_id = t.conversation_id
      LEFT JOIN turns newest ON newest.conversation_id = c.conversation_id AND newest.seq = c.turn_count
     WHERE mf.file_id = :file_id AND t.seq >= coalesce(newest.window_start, 1)
""")


def file_to_dict(row: File) -> dict:
    return {"id": public_id(row.id), "name": row.name, "media_type": row.media_type, "kind": row.kind,
            "size_bytes": row.size_bytes, "sha256": row.sha256, "width": row.width, "height": row.height,
            "pages": row.pages, "token_estimate": row.token_estimate, "created_at": row.created_at.isoformat()}


def clean_name(raw: str | None) -> str:
    """The file's own name without any folders the client sent; 'upload' when it sent none."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name.replace("\x00", "").strip()
    return name[:MAX_NAME_CHARS] or "upload"


def upload(services: Services, session: Session, user: User, data: bytes, name: str) -> File:
    try:
        facts = inspect(data, name, services.settings.upload_limits)
    except MediaRejected as rejected:
        refusal = {413: TooLarge, 415: UnsupportedType}.get(rejected.status, Invalid)
        raise refusal(rejected.type, rejected.message) from None
    file_id = uuid.uuid4()
    key = file_key(user.id, file_id)
    services.store.put_bytes(key, data, facts.media_type)
    row = File(id=file_id, user_id=user.id, name=name, media_type=facts.media_type, kind=facts.kind,
               size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), width=facts.width,
               height=facts.height, pages=facts.pages, token_estimate=facts.token_estimate, storage_key=key,
               anthropic_file_id=None)
    try:
        session.add(row)
        session.commit()
    except Exception:
        session.rollback()
        services.store.delete_key(key)  # no row, no bytes
        raise
    session.refresh(row)
    return row


def own_file(session: Session, user: User, raw_id: str) -> File:
    row_id = parse_file_id(raw_id)
    row = session.get(File, row_id) if row_id else None
    if row is None or row.user_id != user.id:
        raise NotFound.of("file")
    return row


def list_files(session: Session, user: User, limit: int, cursor: str | None) -> tuple[list[File], str | None]:
    return newest_first(session, select(File).where(File.user_id == user.id), File.created_at, File.id, limit, cursor)


def delete_file(services: Services, session: Session, row: File, force: bool) -> None:
    """The row (and its references), then the bytes. Refused while a conversation's window
    still sends the file, unless forced: those turns then tell the model it was deleted."""
    users = [str(c) for c in session.scalars(_IN_USE, {"file_id": row.id})]
    if users and not force:
        raise Conflict("file_in_use", f"The file is attached to messages still in the context window of "
                       f"{len(users)} conversation(s): {', '.join(sorted(users))}; delete with ?force=true to "
                       f"delete it anyway (those conversations then go on without it).")
    key = row.storage_key
    session.delete(row)
    session.commit()
    services.store.delete_key(key)


def split_content(content: str | list[dict], attachments: list[str] | None) -> tuple[str, list[str]]:
    """A message as text and file ids. Content given as blocks (a message sent again, e.g.
    regenerated) holds its files' references: those are its attachments."""
    if isinstance(content, str):
        return content, list(attachments or [])
    ids = [block["file_id"] for block in content if isinstance(block, dict) and "file_id" in block]
    words = "\n\n".join(block.get("text", "") for block in content
                        if isinstance(block, dict) and block.get("type") == "text" and "file_id" not in block)
    return words, [*ids, *(attachments or [])]


def message_files(services: Services, session: Session, user: User, text_tokens: int,
                  attachment_ids: list[str]) -> list[File]:
    """The user's files a message attaches, in order; refused (before anything is queued) if
    one is not theirs, repeats, passes the per-message caps, or the message cannot fit the
    context window at all."""
    settings = services.settings
    if not attachment_ids:
        return []
    if len(attachment_ids) > settings.max_attachments_per_message:
        raise Invalid("too_many_attachments", f"attachments: {len(attachment_ids)} files; at most "
                       f"{settings.max_attachments_per_message} a message (MAX_ATTACHMENTS_PER_MESSAGE).")
    if len(set(attachment_ids)) != len(attachment_ids):
        raise Invalid("invalid_request", "attachments: a file is listed more than once.")
    ids = [parse_file_id(raw) for raw in attachment_ids]
    found = {row.id: row for row in session.scalars(select(File).where(
        File.id.in_([i for i in ids if i]), File.user_id == user.id))}
    for raw, row_id in zip(attachment_ids, ids):
        if row_id not in found:
            raise NotFound("not_found", f"No such file: {raw}.")
    rows = [found[row_id] for row_id in ids]
    documents = sum(1 for row in rows if row.kind == "document")
    if settings.llm_provider == "bedrock" and documents > 5:
        raise Invalid("too_many_attachments", f"attachments: {documents} documents; Bedrock takes at most 5 "
                       "a request.")
    tokens = text_tokens + sum(row.token_estimate for row in rows)
    if tokens > settings.max_context_tokens:
        raise Invalid("context_too_long", f"The message with its attachments is about {tokens:,} tokens; the "
                       f"context window holds {settings.max_context_tokens:,} (MAX_CONTEXT_TOKENS). Attach fewer "
                       f"or smaller files.")
    return rows


def record_references(session: Session, job_id: uuid.UUID, rows: list[File]) -> None:
    session.add_all(MessageFile(job_id=job_id, file_id=row.id) for row in rows)
