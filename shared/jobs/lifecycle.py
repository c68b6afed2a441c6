"""A job's life: made queued (`new_job`; a message's `submit` inserts it after its checks,
in one statement), claimed by a worker (the job row is the lock), its lease
renewed or handed back, ended one way (`end_job`; `commit_turn` when it stores a turn,
with the same END_SET), and the conversation's next job sent once an end commits
(`announce_end`). The SQL is shared/jobs/sql.py's."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from shared.db import Run, all_rows, first_row, in_session, one_statement
from shared.events import JobEvents
from shared.jobs import sql
from shared.jobs.record import final_event, job_to_dict
from shared.models import Conversation, FinalStatus, Job
from shared.tasks import Dispatcher

if TYPE_CHECKING:
    from shared.bootstrap import Services

log = logging.getLogger("parley.jobs")


def new_job(user_id: object, conversation_id: object, request: dict, idempotency_key: str | None,
            callback_url: str | None) -> Job:
    """A queued job, every column given or server-set, so the INSERT's RETURNING fills
    the rest and nothing is reloaded. The caller adds it in its transaction, or `submit`
    inserts it after a message's checks."""
    return Job(id=uuid.uuid4(), user_id=user_id, conversation_id=conversation_id, status="queued",
               request=request, idempotency_key=idempotency_key, callback_url=callback_url,
               reply=None, error=None, started_at=None, finished_at=None, lease_expires_at=None, worker=None,
               webhook_status=None, webhook_next_at=None)


@dataclass(frozen=True)
class Submitted:
    in_flight: int
    owned: bool
    waiting: uuid.UUID | None  # a job of the conversation waiting for tool results
    busy: bool  # something of the conversation is waiting or running
    job: Job | None  # inserted (detached, every column), if every check passed


def submit(session: Session, job: Job, cap: int, reject_busy: bool, reject_waiting: bool = True) -> Submitted:
    """Lock the user and the conversation, check, and insert `job` (new_job's) in the
    session's transaction, in two statements (sql.SUBMIT_LOCK, sql.SUBMIT); what the checks
    mean is api/service.py submit_message's. IntegrityError on a reused idempotency key (a
    concurrent submit of the same request)."""
    session.flush()  # a fork's new conversation, a new webhook secret: Core statements do not autoflush
    run = in_session(session)  # prepared on the session's connection: no Result around each
    locked = run(sql.SUBMIT_LOCK, {"user_id": job.user_id, "conversation_id": job.conversation_id}).fetchone()
    owned = locked is not None and locked.user_id == job.user_id
    row = run(sql.SUBMIT, {
        **{column: getattr(job, column) for column in sql.NEW_JOB_COLUMNS},
        "owned": owned, "cap": cap, "reject": reject_busy, "reject_waiting": reject_waiting}).fetchone()
    fields = row._asdict()
    in_flight, waiting, busy = fields.pop("in_flight"), fields.pop("waiting"), fields.pop("busy")
    inserted = Job(**fields) if fields["id"] is not None else None
    return Submitted(in_flight, owned, waiting, busy is not None, inserted)


def end_job(session: Session, job: Job, status: FinalStatus, *, reply: dict | None = None,
            error: dict | None = None, required_action: dict | None = None) -> str | None:
    """Give a locked job its final state and schedule its webhook, in the caller's
    transaction; returns the conversation's job to send once that commits, if any
    (`announce_end` sends it). Every end of a job is END_SET, here or in a turn's commit."""
    session.execute(sql.END, {"job_id": job.id, "status": status, "reply": reply, "error": error,
                              "required_action": required_action})
    session.refresh(job)
    return next_queued(session, job.conversation_id)


def held_job(session: Session, job_id: object, attempt: int) -> Job | None:
    """The job, locked, if this attempt still holds it: not cancelled, deleted or taken
    over since it was claimed."""
    job = session.get(Job, job_id, with_for_update=True)
    return job if job is not None and job.status == "running" and job.attempts == attempt else None


def next_queued(session: Session, conversation_id: object) -> str | None:
    """The conversation's job to send next, if any (`next_queued_sql`)."""
    found = session.execute(sql.NEXT, {"conversation_id": conversation_id}).scalar()
    return str(found) if found is not None else None


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


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    content: str | list[dict]  # the request's text; blocks once its attachments are added (shared/files.py)
    attempt: int
    created_at: object
    request: dict = field(default_factory=dict)  # the whole request: tools, a continuation's round
    # The conversation as the claim found it (detached: read, never written back); None
    # if it was deleted meanwhile.
    conversation: Conversation | None = None

    @property
    def attachments(self) -> tuple[str, ...]:
        """The message's file ids, in the order attached."""
        return tuple(self.request.get("attachments") or ())


def claim(services: Services, job_id: uuid.UUID, worker: str | None = None) -> Claim | None:
    """The job, now held by this attempt, if it may run (sql.CLAIM), with its conversation.
    Prepared on the pooled connection (shared/db.first_row), as it runs every turn; its
    columns come as they did through SQLAlchemy, which has no types to apply to a `text()`."""
    row = first_row(services.engine, sql.CLAIM, {
        "id": job_id, "lease": services.settings.job_lease_seconds, "worker": worker,
        "max_attempts": services.settings.max_job_attempts})
    if row is None:
        return None
    conversation = (Conversation(**{name: getattr(row, name) for name in _CONVERSATION_COLUMNS})
                    if row.conversation_id is not None else None)
    return Claim(row.claimed_id, row.claimed_user_id, row.claimed_conversation_id, row.claimed_request["content"],
                 row.claimed_attempts, row.claimed_created_at, request=row.claimed_request,
                 conversation=conversation)


_CONVERSATION_COLUMNS = tuple(Conversation.__table__.columns.keys())


def renew(services: Services, claim: Claim) -> bool:
    """Extend the lease now; False if the job is no longer held by this claim
    (cancelled, deleted, or taken over after the lease ran out)."""
    return claim.job_id in renew_all(services, [claim])


def renew_all(services: Services, claims: list[Claim]) -> set[uuid.UUID]:
    """`renew` of many claims in one statement; returns the ids of the jobs still held.
    Prepared on the pooled connection (shared/db.all_rows): it fences every turn's log write."""
    rows = all_rows(services.engine, sql.EXTEND, {"lease": services.settings.job_lease_seconds,
                                                  "ids": [claim.job_id for claim in claims],
                                                  "attempts": [claim.attempt for claim in claims]})
    return {row.id for row in rows}


def lease_left(services: Services, job_id: uuid.UUID) -> float | None:
    """Seconds left on a running job's lease (another worker holds it); None if it is
    not running: finished, deleted, or waiting behind an earlier turn."""
    with one_statement(services.engine) as connection:
        row = connection.execute(sql.LEASE_LEFT, {"id": job_id}).first()
    if row is None or row.status != "running":
        return None
    return float(row.remaining) if row.remaining is not None else 0.0


def release(services: Services, claim: Claim) -> None:
    """Hand a job back to the queue after a failure that was not the job's fault."""
    with one_statement(services.engine) as connection:
        connection.execute(sql.RELEASE, {"id": claim.job_id, "attempt": claim.attempt})


def commit_turn(run: Run, conversation_id: uuid.UUID, job_id: uuid.UUID, attempt: int,
                user_id: uuid.UUID, turn: dict, usage: dict, cost: Decimal, ending: dict,
                reply: dict) -> tuple[Job, str | None] | None:
    """Write the turn and end its job in the caller's transaction (shared/db.prepared);
    returns the ended job (detached, with every column) and the next job to send, or None
    if the conversation is gone or this attempt no longer holds the job (nothing written)."""
    held = run(sql.TURN_LOCK, {"conversation_id": conversation_id, "job_id": job_id, "attempt": attempt}).fetchone()
    if held is None:
        return None
    row = run(sql.TURN_WRITE, {
        "conversation_id": conversation_id, "job_id": job_id, "user_id": user_id, "turns": 1, "cost_usd": cost,
        **usage, **turn, "status": ending["status"], "required_action": ending.get("required_action"),
        "reply": reply, "error": None}).fetchone()
    fields = row._asdict()
    next_job = fields.pop("next_job")
    return Job(**fields), str(next_job) if next_job is not None else None
