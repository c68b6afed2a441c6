"""A turn's commit in two statements: the locks, then every write and the conversation's
next job in one statement of data-modifying CTEs. The same as the ORM's nine round trips
(conversation and job locked, Turn row, counters, usage upsert, `shared/jobs.end_job`,
refresh, `next_queued`), a third of the CPU (README, Benchmarks)."""
from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from shared.models import ACTIVE_STATUSES, Job, Turn
from worker.usage import ADD_USAGE_SQL

# Conversation first, then the job, as every end of a job locks them (shared/jobs.py):
# the uncorrelated EXISTS runs before the job row is read and locked. Nothing is locked
# if the job is no longer this attempt's (`held_job`'s rule); a lock that waited re-checks
# the job's newest version.
_LOCK = text("""
    WITH conversation AS (
        SELECT conversation_id FROM conversations WHERE conversation_id = :conversation_id FOR UPDATE)
    SELECT id FROM jobs
     WHERE id = :job_id AND status = 'running' AND attempts = :attempt
       AND EXISTS (SELECT 1 FROM conversation)
       FOR UPDATE OF jobs
""")

# A separate statement so that its snapshot is taken with the conversation locked: a submit
# committed before the lock is seen by the next-job query, a later one waits (api/service.py).
# The CTEs' own writes are not visible to the statement, so the next job is asked of the
# conversation's other jobs, as `shared/jobs.next_queued` asks after the end: none while a
# job (this one included, if it now calls tools) waits for tool results, else the first
# active one if it is queued. The job's end is `shared/jobs.end_job`'s, webhook included.
_WRITE = text(f"""
    WITH turn AS (
        INSERT INTO turns (conversation_id, seq, job_id, log_key, user_tokens, assistant_tokens, input_tokens,
                           output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd,
                           window_start, entry)
        VALUES (:conversation_id, :seq, :job_id, :log_key, :user_tokens, :assistant_tokens, :input_tokens,
                :output_tokens, :cache_creation_input_tokens, :cache_read_input_tokens, :cost_usd,
                :window_start, :entry)
    ), counters AS (
        UPDATE conversations
           SET turn_count = :seq, message_count = message_count + 2,
               input_tokens = input_tokens + :input_tokens, output_tokens = output_tokens + :output_tokens,
               cache_creation_input_tokens = cache_creation_input_tokens + :cache_creation_input_tokens,
               cache_read_input_tokens = cache_read_input_tokens + :cache_read_input_tokens,
               cost_usd = cost_usd + :cost_usd, updated_at = now()
         WHERE conversation_id = :conversation_id
    ), usage AS ({ADD_USAGE_SQL}
    ), ended AS (
        UPDATE jobs
           SET status = :status, finished_at = now(), lease_expires_at = NULL,
               reply = :reply, error = NULL, required_action = :required_action,
               webhook_status = CASE WHEN callback_url IS NULL THEN webhook_status ELSE 'pending' END,
               webhook_next_at = CASE WHEN callback_url IS NULL THEN webhook_next_at ELSE now() END
         WHERE id = :job_id
        RETURNING *
    )
    SELECT ended.*,
           CASE WHEN ended.status = 'requires_action' OR EXISTS (
                    SELECT 1 FROM jobs waiting
                     WHERE waiting.conversation_id = ended.conversation_id AND waiting.id <> ended.id
                       AND waiting.status = 'requires_action' AND waiting.continued_by IS NULL)
                THEN NULL
                ELSE (SELECT CASE WHEN head.status = 'queued' THEN head.id END FROM jobs head
                       WHERE head.conversation_id = ended.conversation_id AND head.id <> ended.id
                         AND head.status IN {ACTIVE_STATUSES}
                       ORDER BY head.position LIMIT 1)
           END AS next_job
      FROM ended
""").bindparams(bindparam("entry", type_=Turn.__table__.c.entry.type),
                bindparam("reply", type_=Job.__table__.c.reply.type),
                bindparam("required_action", type_=Job.__table__.c.required_action.type))


def commit_turn(connection: Connection, conversation_id: uuid.UUID, job_id: uuid.UUID, attempt: int,
                user_id: uuid.UUID, turn: dict, usage: dict, cost: Decimal, ending: dict,
                reply: dict) -> tuple[Job, str | None] | None:
    """Write the turn and end its job in the caller's transaction; returns the ended job
    (detached, with every column) and the next job to send, or None if the conversation
    is gone or this attempt no longer holds the job (nothing written)."""
    held = connection.execute(_LOCK, {"conversation_id": conversation_id, "job_id": job_id,
                                      "attempt": attempt}).first()
    if held is None:
        return None
    row = connection.execute(_WRITE, {
        "conversation_id": conversation_id, "job_id": job_id, "user_id": user_id, "turns": 1, "cost_usd": cost,
        **usage, **turn, "status": ending["status"], "required_action": ending.get("required_action"),
        "reply": reply}).mappings().one()
    fields = dict(row)
    next_job = fields.pop("next_job")
    return Job(**fields), str(next_job) if next_job is not None else None
