"""Job records as clients see them, and the one way a job ends."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.events import JobEvents
from shared.models import ACTIVE_STATUSES, Job
from shared.tasks import Dispatcher

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


def end_job(session: Session, job: Job, status: str, *, reply: dict | None = None,
            error: dict | None = None, required_action: dict | None = None) -> str | None:
    """Give a locked job its final state and schedule its webhook, in the caller's
    transaction; returns the conversation's job to send once that commits, if any
    (`announce_end` sends it). Every end of a job goes through here."""
    job.status, job.finished_at, job.lease_expires_at = status, func.now(), None
    job.reply, job.error, job.required_action = reply, error, required_action
    if job.callback_url:
        job.webhook_status, job.webhook_next_at = "pending", func.now()
    session.flush()
    session.refresh(job, ["finished_at"])
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


def next_queued(session: Session, conversation_id: object) -> str | None:
    """The conversation's first waiting job, if none of its jobs is running or waits for
    tool results (those must come next: shared/tool_results.py)."""
    if session.scalar(select(Job.id).where(*awaiting_tools(conversation_id)).limit(1)) is not None:
        return None
    row = session.execute(
        select(Job.id, Job.status).where(Job.conversation_id == conversation_id,
                                         Job.status.in_(ACTIVE_STATUSES))
        .order_by(Job.position).limit(1)).first()
    return str(row.id) if row is not None and row.status == "queued" else None


def awaiting_tools(conversation_id: object) -> tuple:
    """Where-clauses: the conversation's job whose tool calls are not answered yet."""
    return (Job.conversation_id == conversation_id, Job.status == "requires_action", Job.continued_by.is_(None))


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
