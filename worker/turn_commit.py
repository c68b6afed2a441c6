"""A turn's commit in two statements: the locks, then every write and the conversation's
next job in one statement of data-modifying CTEs. The same as the ORM's nine round trips
(conversation and job locked, Turn row, counters, usage upsert, the job's end, the next
job), a third of the CPU (README, Benchmarks); the job's end and the next job are
shared/jobs.py's SQL, as everywhere else."""
from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from shared.jobs import END_BINDS, END_SET, next_queued_sql
from shared.models import Job, Turn
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
# conversation's other jobs with `shared/jobs.next_queued_sql` (none if this one now waits
# for tool results). The job's end is `shared/jobs.END_SET`, as every end of a job is.
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
        UPDATE jobs SET {END_SET} WHERE id = :job_id
        RETURNING *
    )
    SELECT ended.*,
           CASE WHEN ended.status = 'requires_action' THEN NULL
                ELSE {next_queued_sql("ended.conversation_id", "ended.id")} END AS next_job
      FROM ended
""").bindparams(bindparam("entry", type_=Turn.__table__.c.entry.type), *END_BINDS)


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
        "reply": reply, "error": None}).mappings().one()
    fields = dict(row)
    next_job = fields.pop("next_job")
    return Job(**fields), str(next_job) if next_job is not None else None
