"""What the endpoints do, apart from HTTP: conversations, submitting turns, reading logs."""
from __future__ import annotations

import base64
import logging
import uuid
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import ApiError, not_found
from shared.bootstrap import Services
from shared.models import ACTIVE_STATUSES, FINAL_STATUSES, Conversation, Job, Turn, User
from shared.storage import conversation_prefix

log = logging.getLogger("parley.api")


def parse_id(raw: str | None, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        raise not_found(what) from None


def own_conversation(session: Session, user: User, conversation_id: str, lock: bool = False) -> Conversation:
    conversation = session.get(Conversation, parse_id(conversation_id, "conversation"), with_for_update=lock)
    if conversation is None or conversation.user_id != user.id:
        raise not_found("conversation")
    return conversation


def own_job(session: Session, user: User, job_id: str) -> Job:
    job = session.get(Job, parse_id(job_id, "job"))
    if job is None or job.user_id != user.id:
        raise not_found("job")
    return job


def create_conversation(session: Session, user: User, name: str | None, system: str | None) -> Conversation:
    conversation_id = uuid.uuid4()
    conversation = Conversation(
        conversation_id=conversation_id, user_id=user.id, conversation_name=name, system=system,
        s3_file_location=conversation_prefix(user.id, conversation_id))
    session.add(conversation)
    session.flush()
    session.refresh(conversation)  # server-side timestamps
    return conversation


def _encode_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.created_at.isoformat()}|{conversation.conversation_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, conversation_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(conversation_id)
    except (ValueError, UnicodeError):
        raise ApiError(400, "invalid_request", "cursor: not a cursor this API returned") from None


def list_conversations(session: Session, user: User, limit: int, cursor: str | None):
    query = select(Conversation).where(Conversation.user_id == user.id)
    if cursor:
        created, conversation_id = _decode_cursor(cursor)
        query = query.where(tuple_(Conversation.created_at, Conversation.conversation_id) < (created, conversation_id))
    rows = session.scalars(query.order_by(Conversation.created_at.desc(), Conversation.conversation_id.desc())
                           .limit(limit + 1)).all()
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def delete_conversation(services: Services, session: Session, conversation: Conversation) -> None:
    """Rows first (so nothing new can start), then the log and the cached window."""
    session.execute(delete(Conversation).where(Conversation.conversation_id == conversation.conversation_id))
    session.commit()
    services.store.delete_prefix(conversation.s3_file_location)
    services.windows.delete(conversation.conversation_id)


def read_messages(services: Services, session: Session, conversation: Conversation) -> list[dict]:
    """Every message of the conversation, in order, from the log."""
    keys = session.scalars(select(Turn.log_key).where(Turn.conversation_id == conversation.conversation_id)
                           .order_by(Turn.seq)).all()
    messages = []
    for key in keys:
        entry = services.store.get(key)
        if entry is None:
            log.error("log entry %s is missing", key)
            continue
        for message in entry["messages"]:
            messages.append({"seq": len(messages) + 1, "role": message["role"],
                             "content": message["content"], "created_at": message["created_at"]})
    return messages


def submit_message(services: Services, session: Session, user: User, conversation_id: uuid.UUID,
                   content: str, idempotency_key: str | None) -> tuple[Job, bool]:
    """Record a job for one user message; returns (job, whether it must be dispatched now).

    The conversation row is locked so a submit and a finishing turn agree on
    who dispatches: a job is sent now only if nothing of its conversation is
    waiting or running; otherwise the turn before it sends it when it ends.
    """
    limit = services.settings.max_message_chars
    if len(content) > limit:
        raise ApiError(413, "message_too_large", f"content: longer than {limit} characters.")
    if idempotency_key:
        existing = session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == idempotency_key))
        if existing is not None:
            return _same_request(existing, conversation_id, content), False
    own = session.get(Conversation, conversation_id, with_for_update=True)
    if own is None or own.user_id != user.id:
        raise not_found("conversation")
    busy = session.scalar(select(Job.id).where(Job.conversation_id == conversation_id,
                                               Job.status.in_(ACTIVE_STATUSES)).limit(1))
    job = Job(id=uuid.uuid4(), user_id=user.id, conversation_id=conversation_id, status="queued",
              request={"content": content}, idempotency_key=idempotency_key)
    session.add(job)
    try:
        session.commit()
    except IntegrityError:  # the same idempotency key, submitted concurrently
        session.rollback()
        existing = session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == idempotency_key))
        if existing is None:
            raise
        return _same_request(existing, conversation_id, content), False
    return job, busy is None


def _same_request(job: Job, conversation_id: uuid.UUID, content: str) -> Job:
    if job.conversation_id != conversation_id or job.request.get("content") != content:
        raise ApiError(409, "idempotency_key_reused",
                       "Idempotency-Key was already used for a different request.")
    return job


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES
