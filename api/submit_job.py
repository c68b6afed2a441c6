"""A submit's database work in two statements: the locks, then the checks and the job's
INSERT in one statement (api/service.py submit_message says what they mean). The ORM
took seven round trips and a flush for the same (README, Benchmarks)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from shared.models import ACTIVE_STATUSES, Job

# The user's row first (NO KEY UPDATE: this user's submits one at a time, without blocking
# the foreign-key checks of a finishing turn's usage row), then the conversation, as the
# ORM locked them; the uncorrelated EXISTS runs before the conversation row is read.
_LOCK = text("""
    WITH owner AS (SELECT id FROM users WHERE id = :user_id FOR NO KEY UPDATE)
    SELECT user_id FROM conversations
     WHERE conversation_id = :conversation_id AND EXISTS (SELECT 1 FROM owner)
       FOR UPDATE OF conversations
""")

# A separate statement, so its snapshot is taken with both rows locked: the in-flight count
# sees every earlier submit of the user, and `busy` every job a finishing turn ended (so
# exactly one of them dispatches the new job). The job is inserted only if every check
# passes; the caller reads which one failed. Columns as shared/jobs.new_job gives them.
_CHECK_AND_INSERT = text(f"""
    WITH facts AS (
        SELECT (SELECT count(*) FROM jobs WHERE user_id = :user_id AND status IN {ACTIVE_STATUSES}) AS in_flight,
               (SELECT id FROM jobs WHERE conversation_id = :conversation_id AND status = 'requires_action'
                   AND continued_by IS NULL LIMIT 1) AS waiting,
               (SELECT id FROM jobs WHERE conversation_id = :conversation_id AND status IN {ACTIVE_STATUSES}
                 LIMIT 1) AS busy
    ), job AS (
        INSERT INTO jobs (id, user_id, conversation_id, status, request, idempotency_key, callback_url,
                          reply, error)
        SELECT :id, :user_id, :conversation_id, 'queued', :request, :idempotency_key, :callback_url,
               :reply, :error
          FROM facts
         WHERE :owned AND in_flight < :cap AND (waiting IS NULL OR NOT :reject_waiting)
           AND (busy IS NULL OR NOT :reject)
        RETURNING *
    )
    SELECT facts.in_flight, facts.waiting, facts.busy, job.* FROM facts LEFT JOIN job ON true
""").bindparams(bindparam("request", type_=Job.__table__.c.request.type),
                bindparam("reply", type_=Job.__table__.c.reply.type),
                bindparam("error", type_=Job.__table__.c.error.type))


@dataclass(frozen=True)
class Submitted:
    in_flight: int
    owned: bool
    waiting: uuid.UUID | None  # a job of the conversation waiting for tool results
    busy: bool  # something of the conversation is waiting or running
    job: Job | None  # inserted (detached, every column), if every check passed


def lock_check_insert(session: Session, user_id: uuid.UUID, conversation_id: uuid.UUID, request: dict,
                      idempotency_key: str | None, callback_url: str | None, cap: int,
                      reject_busy: bool, reject_waiting: bool = True) -> Submitted:
    """Lock, check and insert in the session's transaction; IntegrityError on a reused
    idempotency key (a concurrent submit of the same request)."""
    session.flush()  # a fork's new conversation, a new webhook secret: Core statements do not autoflush
    owner = session.execute(_LOCK, {"user_id": user_id, "conversation_id": conversation_id}).scalar()
    owned = owner == user_id
    row = session.execute(_CHECK_AND_INSERT, {
        "id": uuid.uuid4(), "user_id": user_id, "conversation_id": conversation_id, "request": request,
        "idempotency_key": idempotency_key, "callback_url": callback_url, "reply": None, "error": None,
        "owned": owned, "cap": cap, "reject": reject_busy, "reject_waiting": reject_waiting}).mappings().one()
    fields = dict(row)
    in_flight, waiting, busy = fields.pop("in_flight"), fields.pop("waiting"), fields.pop("busy")
    job = Job(**fields) if fields["id"] is not None else None
    return Submitted(in_flight, owned, waiting, busy is not None, job)
