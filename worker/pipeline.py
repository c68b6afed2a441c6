"""The turn pipeline: one job becomes one turn. Plain Python; Celery only calls it."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import redis
from sqlalchemy import exc as sql_errors, func, select

from shared.bootstrap import Services
from shared.memory import estimate_tokens
from shared.models import Conversation, Job, Turn
from shared.providers import ModelError, ModelReply, ModelRequest
from shared.storage import StorageUnavailable, turn_key
from worker.lease import Claim, Heartbeat, claim, release
from worker.window import load_window, save_window

log = logging.getLogger(__name__)

Dispatch = Callable[[str], None]
TRANSIENT = (sql_errors.OperationalError, sql_errors.InterfaceError, redis.ConnectionError,
             redis.TimeoutError, StorageUnavailable)
RETRY_SECONDS = 2.0


@dataclass(frozen=True)
class Outcome:
    """What became of a delivery: `done`, `skipped` (nothing to do) or `busy` (try later)."""
    status: str
    retry_after: float = 0.0


def run_turn(services: Services, job_id: str, dispatch: Dispatch) -> Outcome:
    job_uuid = uuid.UUID(job_id)
    try:
        held = claim(services, job_uuid)
        if held is None:
            return _why_not_claimed(services, job_uuid)
    except TRANSIENT as error:
        log.warning("job %s: cannot claim yet, will retry: %s", job_id, error)
        return Outcome("busy", retry_after=RETRY_SECONDS)
    try:
        return _run_claimed(services, held, dispatch)
    except TRANSIENT as error:
        # A backing service is down: hand the job back and let the task retry later.
        log.warning("job %s: %s unavailable, will retry: %s", job_id, type(error).__name__, error)
        try:
            release(services, held)
        except TRANSIENT:
            pass  # the lease runs out on its own
        return Outcome("busy", retry_after=RETRY_SECONDS)
    except Exception:
        log.exception("job %s failed unexpectedly", job_id)
        _finish_failed(services, held, dispatch, "internal", "Parley failed to process this message.")
        return Outcome("done")


def _run_claimed(services: Services, held: Claim, dispatch: Dispatch) -> Outcome:
    with services.sessions() as session:
        conversation = session.get(Conversation, held.conversation_id)
    if conversation is None:  # deleted while waiting; its jobs went with it
        return Outcome("skipped")

    memory = load_window(services, conversation)
    user_tokens = estimate_tokens(held.content)
    memory.update_memory("user", held.content, user_tokens)
    context = memory.get_current_context()
    if not context:
        _finish_failed(services, held, dispatch, "context_too_long",
                       "The message alone is longer than the context window (MAX_CONTEXT_TOKENS).")
        return Outcome("done")

    request = ModelRequest(system=conversation.system or services.settings.default_system_prompt,
                           messages=context, model=services.settings.model,
                           max_tokens=services.settings.max_tokens)
    try:
        with Heartbeat(services, held):
            reply = services.provider.complete(request)
    except ModelError as error:
        _finish_failed(services, held, dispatch, error.kind, error.message)
        return Outcome("done")

    seq = conversation.turn_count + 1
    log_key = turn_key(conversation.s3_file_location, seq)
    services.store.put(log_key, _log_entry(held, seq, user_tokens, reply))
    next_job = _commit_turn(services, held, seq, log_key, user_tokens, reply)
    if next_job is _LOST:
        return Outcome("skipped")
    memory.update_memory("assistant", reply.text, reply.output_tokens)
    memory.turn_seq = seq
    save_window(services, held.conversation_id, memory)
    _announce(services, held.job_id, "succeeded", next_job, dispatch)
    return Outcome("done")


_LOST = object()  # the claim was taken over or the conversation deleted meanwhile


def _why_not_claimed(services: Services, job_id: uuid.UUID) -> Outcome:
    with services.sessions() as session:
        job = session.get(Job, job_id)
        now = session.scalar(select(func.now()))
    if job is None or job.status != "running":
        # finished, deleted, or waiting behind an earlier turn that will dispatch it
        return Outcome("skipped")
    remaining = (job.lease_expires_at - now).total_seconds() if job.lease_expires_at else 0.0
    return Outcome("busy", retry_after=max(1.0, remaining))


def _log_entry(held: Claim, seq: int, user_tokens: int, reply: ModelReply) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    return {
        "seq": seq,
        "job_id": str(held.job_id),
        "messages": [
            {"role": "user", "content": held.content, "tokens": user_tokens,
             "created_at": held.created_at.isoformat()},
            {"role": "assistant", "content": reply.text, "tokens": reply.output_tokens,
             "created_at": now, "model": reply.model},
        ],
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _commit_turn(services, held: Claim, seq: int, log_key: str, user_tokens: int, reply: ModelReply):
    """Turn row, counters and job state in one transaction; returns the next job to run."""
    with services.sessions.begin() as session:
        conversation = session.get(Conversation, held.conversation_id, with_for_update=True)
        job = session.get(Job, held.job_id, with_for_update=True)
        if conversation is None or job is None or job.status != "running" or job.attempts != held.attempt:
            return _LOST
        session.add(Turn(conversation_id=held.conversation_id, seq=seq, job_id=held.job_id, log_key=log_key,
                         user_tokens=user_tokens, assistant_tokens=reply.output_tokens,
                         input_tokens=reply.input_tokens, output_tokens=reply.output_tokens))
        conversation.turn_count = seq
        conversation.message_count += 2
        conversation.input_tokens += reply.input_tokens
        conversation.output_tokens += reply.output_tokens
        conversation.updated_at = func.now()
        job.status, job.finished_at, job.lease_expires_at = "succeeded", func.now(), None
        job.reply = {"role": "assistant", "content": reply.text, "model": reply.model,
                     "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}}
        return _next_queued(session, held.conversation_id)


def _finish_failed(services: Services, held: Claim, dispatch: Dispatch, kind: str, message: str) -> None:
    with services.sessions.begin() as session:
        job = session.get(Job, held.job_id, with_for_update=True)
        if job is None or job.status != "running" or job.attempts != held.attempt:
            return
        job.status, job.finished_at, job.lease_expires_at = "failed", func.now(), None
        job.error = {"type": kind, "message": message}
        next_job = _next_queued(session, held.conversation_id)
    log.info("job %s failed: %s", held.job_id, kind)
    _announce(services, held.job_id, "failed", next_job, dispatch)


def _next_queued(session, conversation_id: uuid.UUID) -> str | None:
    next_id = session.scalar(
        select(Job.id).where(Job.conversation_id == conversation_id, Job.status == "queued")
        .order_by(Job.position).limit(1))
    return str(next_id) if next_id else None


def _announce(services: Services, job_id: uuid.UUID, status: str, next_job: str | None,
              dispatch: Dispatch) -> None:
    if next_job:
        dispatch(next_job)
    try:
        services.notifier.publish_finished(job_id, status)
    except Exception as error:  # long-polls still see the row when their wait ends
        log.warning("could not publish finish of %s: %s", job_id, error)
