"""A job's life, in one place: claimed by a worker (the job row is the lock), its lease
renewed or handed back, ended one way (`end_job`), the ordering rule that says which job
of a conversation may run (`nothing_before`, `next_queued`), and the record clients see.
The API submits jobs (api/service.py) and the sweeper and checker ask with the same rule."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from shared.events import JobEvents
from shared.models import ACTIVE_STATUSES, FinalStatus, Job
from shared.tasks import Dispatcher

if TYPE_CHECKING:
    from shared.bootstrap import Services

log = logging.getLogger("parley.jobs")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_to_dict(job: Job) -> dict:
    body = {
        "id": str(job.id),
        "conversation_id": str(job.conversation_id),
        "status": job.status,
        "request": {"content": job.request.get("content", ""),
                    **({"attachments": job.request["attachments"]} if job.request.get("attachments") else {})},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "attempts": job.attempts,
        "reply": job.reply,
        "error": job.error,
    }
    if job.required_action:
        body["required_action"] = {**job.required_action,
                                   "continued_by": str(job.continued_by) if job.continued_by else None}
    if job.request.get("continues"):
        body["request"]["continues"] = job.request["continues"]
    if job.request.get("thinking"):  # this message's own thinking setting
        body["request"]["thinking"] = job.request["thinking"]
    if job.callback_url:
        body["webhook"] = {"url": job.callback_url, "status": job.webhook_status or "waiting",
                           "attempts": job.webhook_attempts or []}
    return body


def new_job(user_id: object, conversation_id: object, request: dict, idempotency_key: str | None,
            callback_url: str | None) -> Job:
    """A queued job, every column given or server-set, so the INSERT's RETURNING fills
    the rest and nothing is reloaded. The caller adds it in its transaction. A message's
    submit inserts the same columns in its checking statement (api/submit_job.py)."""
    return Job(id=uuid.uuid4(), user_id=user_id, conversation_id=conversation_id, status="queued",
               request=request, idempotency_key=idempotency_key, callback_url=callback_url,
               reply=None, error=None, started_at=None, finished_at=None, lease_expires_at=None, worker=None,
               webhook_status=None, webhook_next_at=None)


# How a job ends, as SQL: its final status and outcome, no lease, and its webhook due now if
# it has a callback. `end_job` runs it; a stored turn's commit statement runs it as one of
# its CTEs (worker/turn_commit.py), so both end a job the same way.
END_SET = """status = :status, finished_at = now(), lease_expires_at = NULL,
             reply = :reply, error = :error, required_action = :required_action,
             webhook_status = CASE WHEN callback_url IS NULL THEN webhook_status ELSE 'pending' END,
             webhook_next_at = CASE WHEN callback_url IS NULL THEN webhook_next_at ELSE now() END"""
END_BINDS = tuple(bindparam(name, type_=Job.__table__.c[name].type) for name in ("reply", "error", "required_action"))
_END = text(f"UPDATE jobs SET {END_SET} WHERE id = :job_id").bindparams(*END_BINDS)


def end_job(session: Session, job: Job, status: FinalStatus, *, reply: dict | None = None,
            error: dict | None = None, required_action: dict | None = None) -> str | None:
    """Give a locked job its final state and schedule its webhook, in the caller's
    transaction; returns the conversation's job to send once that commits, if any
    (`announce_end` sends it). Every end of a job is END_SET, here or in a turn's commit."""
    session.execute(_END, {"job_id": job.id, "status": status, "reply": reply, "error": error,
                           "required_action": required_action})
    session.refresh(job)
    return next_queued(session, job.conversation_id)


def held_job(session: Session, job_id: object, attempt: int) -> Job | None:
    """The job, locked, if this attempt still holds it: not cancelled, deleted or taken
    over since it was claimed."""
    job = session.get(Job, job_id, with_for_update=True)
    return job if job is not None and job.status == "running" and job.attempts == attempt else None


def nothing_before(job: str, earlier: str) -> str:
    """The ordering rule, as SQL: no job of `job`'s conversation submitted before it is
    still waiting, running or waiting for tool results. A job runs only then, so turns
    keep submit order (the claim, the sweeper and the checker all ask it this way;
    `next_queued` asks the same of a whole conversation)."""
    return f"""NOT EXISTS (SELECT 1 FROM jobs {earlier}
                    WHERE {earlier}.conversation_id = {job}.conversation_id
                      AND {earlier}.position < {job}.position
                      AND ({earlier}.status IN {ACTIVE_STATUSES}
                           OR ({earlier}.status = 'requires_action' AND {earlier}.continued_by IS NULL)))"""


def next_queued_sql(conversation: str, besides: str) -> str:
    """The conversation's job to send next, as an SQL expression (NULL for none): its first
    active job if that is queued, unless one of its jobs waits for tool results (those must
    come next: shared/tool_results.py). `besides`: a job not to count (a statement that
    ends a job does not see its own write, so it leaves that job out and asks of it apart)."""
    return f"""CASE WHEN EXISTS (SELECT 1 FROM jobs waiting
                                  WHERE waiting.conversation_id = {conversation}
                                    AND waiting.id IS DISTINCT FROM {besides}
                                    AND waiting.status = 'requires_action' AND waiting.continued_by IS NULL)
                THEN NULL
                ELSE (SELECT CASE WHEN head.status = 'queued' THEN head.id END FROM jobs head
                       WHERE head.conversation_id = {conversation} AND head.id IS DISTINCT FROM {besides}
                         AND head.status IN {ACTIVE_STATUSES}
                       ORDER BY head.position LIMIT 1)
           END"""


_NEXT = text(f"SELECT {next_queued_sql('CAST(:conversation_id AS uuid)', 'NULL')}")


def next_queued(session: Session, conversation_id: object) -> str | None:
    """The conversation's job to send next, if any (`next_queued_sql`)."""
    found = session.execute(_NEXT, {"conversation_id": conversation_id}).scalar()
    return str(found) if found is not None else None


def final_event(job: Job) -> str:
    return f"job.{job.status}"


def announce_end(events: JobEvents, dispatcher: Dispatcher, job: Job, next_job: str | None) -> None:
    """After an end is committed: send the conversation's next turn, publish the
    final event (which also wakes long-polls) and send the webhook."""
    if next_job:
        dispatcher.turn(next_job)
    try:
        events.add(job.id, final_event(job), job_to_dict(job))
    except Exception as error:  # best effort: a reader that misses it finds the end in PostgreSQL
        log.warning("could not publish the end of job %s: %s", job.id, error)
    if job.callback_url:
        dispatcher.webhook(job.id)


# A job runs when it is queued (or its holder's lease ran out) and nothing before it
# in its conversation is unfinished (`nothing_before`, above).
_CLAIM = text(f"""
    UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = :worker,
           takeovers = takeovers + (CASE WHEN status = 'running' THEN 1 ELSE 0 END),
           started_at = coalesce(started_at, now()),
           lease_expires_at = now() + make_interval(secs => :lease)
     WHERE id = :id
       AND (status = 'queued'
            OR (status = 'running' AND lease_expires_at < now() AND takeovers + 1 < :max_attempts))
       AND {nothing_before("jobs", "earlier")}
 RETURNING id, user_id, conversation_id, request, attempts, created_at
""")

_EXTEND = text("""
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease)
     WHERE id = :id AND status = 'running' AND attempts = :attempt
""")

# A handed-back job keeps the time it was handed back in lease_expires_at: its
# task retries it with backoff, and the sweeper leaves it to those retries (see
# worker/retry.py) instead of re-sending it, and calling the model, at every sweep.
_RELEASE = text("""
    UPDATE jobs SET status = 'queued', lease_expires_at = now()
     WHERE id = :id AND status = 'running' AND attempts = :attempt
""")


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    content: str | list[dict]  # the request's text; blocks once its attachments are added (shared/files.py)
    attempt: int
    created_at: object
    request: dict = field(default_factory=dict)  # the whole request: tools, a continuation's round

    @property
    def attachments(self) -> tuple[str, ...]:
        """The message's file ids, in the order attached."""
        return tuple(self.request.get("attachments") or ())


def claim(services: Services, job_id: uuid.UUID, worker: str | None = None) -> Claim | None:
    with services.engine.begin() as connection:
        row = connection.execute(
            _CLAIM, {"id": job_id, "lease": services.settings.job_lease_seconds, "worker": worker,
                     "max_attempts": services.settings.max_job_attempts}).first()
    if row is None:
        return None
    return Claim(row.id, row.user_id, row.conversation_id, row.request["content"], row.attempts, row.created_at,
                 request=row.request)


def renew(services: Services, claim: Claim) -> bool:
    """Extend the lease now; False if the job is no longer held by this claim
    (cancelled, deleted, or taken over after the lease ran out)."""
    with services.engine.begin() as connection:
        return connection.execute(_EXTEND, {"id": claim.job_id, "lease": services.settings.job_lease_seconds,
                                            "attempt": claim.attempt}).rowcount == 1


def release(services: Services, claim: Claim) -> None:
    """Hand a job back to the queue after a failure that was not the job's fault."""
    with services.engine.begin() as connection:
        connection.execute(_RELEASE, {"id": claim.job_id, "attempt": claim.attempt})

