"""/v1/jobs: a queued turn's state, with long-polling."""
from __future__ import annotations

import logging

from flask_openapi3 import APIBlueprint, Tag
from redis import RedisError
from sqlalchemy import bindparam, select

from api import schemas
from api.context import ctx, require_user, services
from api.errors import ApiError, not_found
from api.service import cancel_job, is_final, own_job, parse_id
from api.stream import SSE_RESPONSE, hold_stream_slot, resume_point, sse_response
from api.tool_results import cancel_tool_calls
from shared.db import first_row, reading
from shared.jobs import announce_end, job_to_dict
from shared.models import Job, User

blueprint = APIBlueprint("jobs", __name__, url_prefix="/v1/jobs", abp_tags=[Tag(name="jobs")],
                         abp_security=[{"bearer": []}],
                         abp_responses={400: schemas.ErrorEnvelope, 401: schemas.ErrorEnvelope,
                                        404: schemas.ErrorEnvelope, 503: schemas.ErrorEnvelope})
log = logging.getLogger("parley.api")


def wait_for_job(user: User, job_id: str, wait: float) -> dict:
    """The job, after holding the request until it finishes or `wait` seconds pass. Its row
    is read once (which also checks it is the user's): the end a long-poll waits for comes
    with the job as it ended (its final event), and the wait's first look at the row is
    the read that found it unfinished (an end published meanwhile is seen in Redis)."""
    def current() -> dict:
        return _own_job_dict(user, job_id)

    job = current()
    if wait > 0 and not is_final(job["status"]):
        unlooked = [job]

        def final() -> bool:  # later looks (an end never published) read the row again
            return is_final((unlooked.pop() if unlooked else current())["status"])

        waits = hold_stream_slot(services())  # a long-poll counts as an open stream (429 at the cap)
        try:
            waits.wait(job["id"], wait, final)
        finally:
            waits.release(user.id)
        job = _as_ended(job["id"]) or current()
    return job


# Built once: building it for every long-poll was ~2 % of the API's samples in scenario 4.
_JOB = select(Job.__table__).where(Job.id == bindparam("job_id"))


def _own_job_dict(user: User, job_id: str) -> dict:
    """The user's job as clients see it, or a 404: one prepared select, whose row has every
    column `job_to_dict` reads (no ORM instance or session for a read-only answer)."""
    row = first_row(services().engine, _JOB, {"job_id": parse_id(job_id, "job")})
    if row is None or row.user_id != user.id:
        raise not_found("job")
    return job_to_dict(row)


def _as_ended(job_id: str) -> dict | None:
    """The job from its final event; None if it has none (yet) or Redis does not answer."""
    try:
        return services().events.final_data(job_id)
    except RedisError as error:
        log.warning("job %s: final event not read, reading the row: %s", job_id, error)
        return None


@blueprint.get("/<job_id>", responses={200: schemas.Job})
def read(path: schemas.JobPath, query: schemas.WaitQuery):
    """A job; `?wait=S` answers the moment it finishes, or after S seconds."""
    user = require_user()
    limit = services().settings.max_wait_seconds
    if query.wait > limit:
        raise ApiError(400, "invalid_request", f"wait: at most {limit:g} seconds.")
    return wait_for_job(user, path.job_id, query.wait)


@blueprint.get("/<job_id>/events", responses={200: SSE_RESPONSE})
def events(path: schemas.JobPath, query: schemas.EventsQuery):
    """The job's events as Server-Sent Events: `job.queued`, `job.started`,
    `thinking.delta` {thinking} (extended thinking, before the text), `message.delta` {text},
    `message.reset`, `tool.call` {id, name, input}, then one of `job.succeeded`, `job.failed`,
    `job.cancelled`, `job.requires_action`.
    Resume with `Last-Event-ID` or `?after=N`."""
    user = require_user()
    after = resume_point(query.after)
    with reading(services().sessions) as session:
        job_id = str(own_job(session, user, path.job_id).id)
    return sse_response(services(), job_id, after)


@blueprint.post("/<job_id>/cancel", responses={200: schemas.Job, 409: schemas.ErrorEnvelope})
def cancel(path: schemas.JobPath):
    """Cancel a job: a queued one never runs, a running one stops its model call
    and writes no turn; a requires_action job's tool calls are answered with an error
    result ("cancelled by the user") and Claude's reply to it is queued, so the
    conversation stays valid. A job that already ended answers 409."""
    user = require_user()
    with services().sessions() as session:
        job = own_job(session, user, path.job_id)
        if job.status == "requires_action" and job.continued_by is None:
            return cancel_tool_calls(session, job)
        job, next_job = cancel_job(session, job)
    announce_end(services().events, ctx().dispatcher, job, next_job)
    return job_to_dict(job)
