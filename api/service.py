"""What the endpoints do, apart from HTTP: conversations, submitting turns, reading logs."""
from __future__ import annotations

import logging
import uuid

import redis
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.file_service import message_files, record_references, split_content
from api.pages import newest_first
from shared.bootstrap import Services
from shared.jobs import end_job, job_to_dict, new_job, submit
from shared.memory import estimate_tokens
from shared.models import FINAL_STATUSES, Conversation, Job, User
from shared.quotas import enforce_token_quota
from shared.refusals import Conflict, Invalid, NotFound, TooLarge, TooMany
from shared.storage import conversation_prefix
from shared.thinking import ThinkingRefused, check_setting
from shared.webhooks import ensure_secret, url_problem

log = logging.getLogger("parley.api")


def parse_id(raw: str | None, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw or "")
    except ValueError:
        raise NotFound.of(what) from None


def own_conversation(session: Session, user: User, conversation_id: str, lock: bool = False) -> Conversation:
    conversation = session.get(Conversation, parse_id(conversation_id, "conversation"), with_for_update=lock)
    if conversation is None or conversation.user_id != user.id:
        raise NotFound.of("conversation")
    return conversation


def own_job(session: Session, user: User, job_id: str) -> Job:
    job = session.get(Job, parse_id(job_id, "job"))
    if job is None or job.user_id != user.id:
        raise NotFound.of("job")
    return job


def create_conversation(session: Session, user: User, name: str | None, system: str | None,
                        model: str | None = None, thinking: dict | None = None) -> Conversation:
    conversation_id = uuid.uuid4()
    conversation = Conversation(
        conversation_id=conversation_id, user_id=user.id, conversation_name=name, system=system, model=model,
        thinking=thinking, s3_file_location=conversation_prefix(user.id, conversation_id))
    session.add(conversation)
    session.flush()
    session.refresh(conversation)  # server-side timestamps
    return conversation


def list_conversations(session: Session, user: User, limit: int, cursor: str | None):
    query = select(Conversation).where(Conversation.user_id == user.id)
    return newest_first(session, query, Conversation.created_at, Conversation.conversation_id, limit, cursor)


def delete_conversation(services: Services, session: Session, conversation: Conversation) -> None:
    """Rows first (so nothing new can start), then the log and the cached window."""
    session.execute(delete(Conversation).where(Conversation.conversation_id == conversation.conversation_id))
    session.commit()
    services.store.delete_prefix(conversation.s3_file_location)
    services.windows.delete(conversation.conversation_id)


def checked_thinking(services: Services, catalog, model: str, setting: dict | None) -> dict | None:
    """A thinking setting as stored, checked against what `model` takes (the provider's
    capabilities, shared/thinking.py); a 400 saying why not."""
    try:
        return check_setting(setting, model, catalog.thinking(model), services.settings.max_tokens)
    except ThinkingRefused as refused:
        raise Invalid("invalid_request", str(refused)) from None


def submit_message(services: Services, session: Session, user: User, conversation_id: uuid.UUID,
                   content: str | list[dict], idempotency_key: str | None, on_busy: str | None = None,
                   callback_url: str | None = None, attachments: list[str] | None = None,
                   thinking: dict | None = None, tools: dict | None = None) -> tuple[Job, bool]:
    """Record a job for one user message; returns (job, whether it must be dispatched now).

    The conversation row is locked so a submit and a finishing turn agree on
    who dispatches: a job is sent now only if nothing of its conversation is
    waiting or running; otherwise the turn before it sends it when it ends.
    The user's row is locked first, so the in-flight cap holds under concurrency.
    """
    settings = services.settings
    content, attachments = split_content(content, attachments)
    if len(content) > settings.max_message_chars:
        raise TooLarge("message_too_large", f"content: longer than {settings.max_message_chars} characters.")
    if callback_url is not None and (problem := url_problem(callback_url)):
        raise Invalid("invalid_request", f"callback_url: {problem}.")
    if idempotency_key:
        existing = session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == idempotency_key))
        if existing is not None:
            return _same_request(existing, conversation_id, content, attachments), False
    files = message_files(services, session, user, estimate_tokens(content), attachments)
    enforce_token_quota(services, user)
    if callback_url is not None:
        ensure_secret(session, user.id)  # deliveries are signed with it
    request = {"content": content, **({"attachments": attachments} if attachments else {}),
               **({"thinking": thinking} if thinking else {}), **(tools or {})}
    try:
        submitted = submit(session, new_job(user.id, conversation_id, request, idempotency_key, callback_url),
                           settings.max_jobs_in_flight, reject_busy=on_busy == "reject",
                           reject_waiting=on_busy != "enqueue")
    except IntegrityError:  # the same idempotency key, submitted concurrently
        session.rollback()
        existing = session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == idempotency_key))
        if existing is None:
            raise
        return _same_request(existing, conversation_id, content, attachments), False
    if not submitted.owned:  # the only ownership check of a plain message (no read before)
        raise NotFound.of("conversation")
    if submitted.in_flight >= settings.max_jobs_in_flight:
        raise TooMany("too_many_jobs", f"{submitted.in_flight} of your messages are still waiting or running "
                       f"(at most {settings.max_jobs_in_flight}); wait for one to finish.")
    if (waiting := submitted.waiting) is not None and submitted.job is None:
        raise Conflict("tool_results_required", f"This conversation waits for the results of job {waiting}'s "
                       f"tool calls: POST /v1/jobs/{waiting}/tool_results (or cancel that job) first, or send "
                       f"with on_busy=enqueue to wait behind them.")
    if submitted.busy and on_busy == "reject":
        raise Conflict("conversation_busy", "This conversation has a message waiting or running; "
                       "retry when it ends, or send with on_busy=enqueue.")
    job = submitted.job
    record_references(session, job.id, files)
    _add_event(services, job, "job.queued")  # before the commit, so it precedes anything a worker adds
    session.commit()
    # Sent now only if it can run now; one queued behind a job or its tool results is sent
    # when that ends (a tool round's continuation goes first: shared/tool_results.py).
    return job, not submitted.busy and submitted.waiting is None


def cancel_job(session: Session, job: Job) -> tuple[Job, str | None]:
    """End a queued or running job as cancelled; returns it and the job to send next.

    Locks the conversation first, as a finishing turn does, so exactly one of
    them ends the job. A running turn sees the end and stops its model call.
    """
    session.get(Conversation, job.conversation_id, with_for_update=True)
    session.refresh(job, with_for_update=True)
    if job.status in FINAL_STATUSES:
        raise Conflict("job_finished", f"The job already ended ({job.status}).")
    next_job = end_job(session, job, "cancelled")
    session.commit()
    return job, next_job


def _add_event(services: Services, job: Job, type_: str) -> None:
    try:
        services.events.add(job.id, type_, job_to_dict(job))
    except redis.RedisError as error:  # live readers fall back to PostgreSQL
        log.warning("could not add %s to job %s: %s", type_, job.id, error)


def _same_request(job: Job, conversation_id: uuid.UUID, content: str, attachments: list[str]) -> Job:
    if (job.conversation_id != conversation_id or job.request.get("content") != content
            or (job.request.get("attachments") or []) != attachments):
        raise Conflict("idempotency_key_reused",
                       "Idempotency-Key was already used for a different request.")
    return job


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES
