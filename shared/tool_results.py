"""Answering a job's tool calls: the caller's results (POST /v1/jobs/{id}/tool_results),
or an error result when the job is cancelled or waits past TOOL_RESULTS_TIMEOUT_SECONDS.
Either way the results become the user message of a continuation job, queued in the
same conversation, so every tool_use in the log gets its tool_result and the
conversation goes on.
"""
from __future__ import annotations

import logging

import redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.jobs import job_to_dict, new_job, next_queued
from shared.jobs.sql import MOVE_BEHIND
from shared.models import Conversation, Job

log = logging.getLogger("parley.tools")

CANCELLED = "The call was cancelled by the user."
# Copied from the job that called the tools: the continuation runs as its message did.
_INHERITED = ("tools", "tool_choice", "thinking")

class ToolResultsRefused(Exception):
    """Results that cannot answer this job; `status` and `kind` for the API's envelope."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def error_results(job: Job, message: str) -> list[dict]:
    return [{"tool_call_id": call["id"], "content": message, "is_error": True}
            for call in (job.required_action or {}).get("tool_calls", [])]


def answer_calls(session: Session, events, job: Job, results: list[dict], idempotency_key: str | None = None
                 ) -> tuple[Job, bool]:
    """Queue the continuation carrying `results` for a requires_action job; returns it and
    whether it must be sent now. Commits. The conversation row is locked first, as a
    submit and a finishing turn do, so one answer wins and the order holds."""
    session.get(Conversation, job.conversation_id, with_for_update=True)
    session.refresh(job, with_for_update=True)
    if idempotency_key and (replay := _replayed(session, job, results, idempotency_key)) is not None:
        return replay, False
    if job.status != "requires_action":
        raise ToolResultsRefused(409, "not_waiting_for_tool_results",
                                 f"The job is {job.status}; only a requires_action job takes tool results.")
    if job.continued_by is not None:
        raise ToolResultsRefused(409, "tool_results_already_submitted",
                                 f"The job's tool calls were already answered: continuation job {job.continued_by}.")
    content = _result_blocks(job, results)
    request = {"content": content, "continues": str(job.id),
               "tool_round": int(job.request.get("tool_round", 0)) + 1,
               **{key: job.request[key] for key in _INHERITED if key in job.request}}
    continuation = new_job(job.user_id, job.conversation_id, request, idempotency_key, job.callback_url)
    session.add(continuation)
    try:
        session.flush()
    except IntegrityError:  # the same key, used at the same moment for another request
        session.rollback()
        raise ToolResultsRefused(409, "idempotency_key_reused",
                                 "Idempotency-Key was already used for a different request.") from None
    job.continued_by = continuation.id
    later = session.scalars(select(Job.id).where(Job.conversation_id == job.conversation_id,
                                                 Job.status == "queued", Job.id != continuation.id,
                                                 Job.position > job.position).order_by(Job.position)).all()
    for queued in later:
        session.execute(MOVE_BEHIND, {"id": queued})
    session.flush()
    send_now = next_queued(session, job.conversation_id) == str(continuation.id)
    try:  # before the commit, so it precedes anything a worker adds
        events.add(continuation.id, "job.queued", job_to_dict(continuation))
    except redis.RedisError as error:
        log.warning("could not add job.queued to job %s: %s", continuation.id, error)
    session.commit()
    return continuation, send_now


def _replayed(session: Session, job: Job, results: list[dict], key: str) -> Job | None:
    existing = session.scalar(select(Job).where(Job.user_id == job.user_id, Job.idempotency_key == key))
    if existing is None:
        return None
    if existing.request.get("continues") != str(job.id) or existing.request.get("content") != _blocks(results):
        raise ToolResultsRefused(409, "idempotency_key_reused",
                                 "Idempotency-Key was already used for a different request.")
    return existing


def _result_blocks(job: Job, results: list[dict]) -> list[dict]:
    """The results as tool_result blocks in the calls' order; refused unless they answer
    every call exactly once."""
    calls = [call["id"] for call in (job.required_action or {}).get("tool_calls", [])]
    given = [result["tool_call_id"] for result in results]
    repeated = sorted({i for i in given if given.count(i) > 1})
    unknown = [i for i in given if i not in calls]
    missing = [i for i in calls if i not in given]
    problems = ([f"answered more than once: {', '.join(repeated)}"] if repeated else []) + \
               ([f"not calls of this job: {', '.join(unknown)}"] if unknown else []) + \
               ([f"no result given: {', '.join(missing)}"] if missing else [])
    if problems:
        raise ToolResultsRefused(400, "invalid_tool_results", "results: " + "; ".join(problems)
                                 + f" (the job's calls: {', '.join(calls)}).")
    by_id = {result["tool_call_id"]: result for result in results}
    return _blocks([by_id[i] for i in calls])


def _blocks(results: list[dict]) -> list[dict]:
    return [{"type": "tool_result", "tool_use_id": r["tool_call_id"], "content": r["content"],
             **({"is_error": True} if r.get("is_error") else {})} for r in results]
