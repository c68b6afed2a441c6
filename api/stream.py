"""Server-Sent Events: a job's events as they happen, resumable by event id.

Each open stream holds one API thread and, while waiting, one Redis connection
blocked in XREAD; it touches PostgreSQL only when the stream is quiet for a
ping interval, to notice a job that ended without a final event (a worker that
died between commit and publish) or whose events expired.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Iterator

import redis
from flask import Response, request

from api.errors import ApiError
from shared.bootstrap import Services
from shared.events import Event
from shared.jobs import final_event, job_to_dict
from shared.models import FINAL_STATUSES, Job

log = logging.getLogger("parley.api")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_RESPONSE = {"description": "A text/event-stream of the job's events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}


def wants_stream() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/event-stream"]) == "text/event-stream"


def resume_point(after: int | None) -> int:
    """Where to resume: `Last-Event-ID` (what EventSource sends) or `?after=`."""
    header = request.headers.get("Last-Event-ID")
    if header is None:
        return after or 0
    if not header.strip().isdigit() or len(header.strip()) > 18:
        raise ApiError(400, "invalid_request", "Last-Event-ID: must be an event id this stream sent.")
    return int(header)


def sse_response(services: Services, job_id: str, after: int, headers: dict | None = None) -> Response:
    return Response(job_events(services, job_id, after), mimetype="text/event-stream",
                    headers={**SSE_HEADERS, **(headers or {})})


def job_events(services: Services, job_id: str, after: int) -> Iterator[str]:
    """Events numbered above `after`, then the final one; pings while quiet."""
    events, ping = services.events, services.settings.sse_ping_seconds
    look_at_row = True  # before waiting, and after each quiet interval
    while True:
        try:
            batch = events.read(job_id, after, block_ms=None if look_at_row else int(ping * 1000))
        except redis.RedisError as error:
            log.warning("event stream of job %s: Redis failed: %s", job_id, error)
            batch = None
        for event in batch or ():
            yield event.to_sse()
            after = event.id
            if event.final:
                return
        if batch:
            look_at_row = False
        elif look_at_row:
            end = _end_without_event(services, job_id, after, redis_ok=batch is not None)
            if end is _GONE:
                return
            if end is not None:
                yield end.to_sse()
                return
            look_at_row = False
            if batch is None:
                time.sleep(ping)  # Redis is down: look again a little later
        else:
            yield ": ping\n\n"
            look_at_row = True


_GONE = Event(0, "", {})  # the job was deleted with its conversation


def _end_without_event(services: Services, job_id: str, after: int, redis_ok: bool) -> Event | None:
    """The job's end when the stream cannot give it (events expired, Redis lost them,
    or the worker died before publishing); None while the stream will."""
    with services.sessions() as session:
        job = session.get(Job, uuid.UUID(job_id))
    if job is None:
        return _GONE
    if job.status not in FINAL_STATUSES:
        return None
    if redis_ok:
        try:
            if services.events.ended(job_id):
                return None
            if services.events.exists(job_id):
                services.events.add(job_id, final_event(job), job_to_dict(job))  # once, whoever is first
                return None
        except redis.RedisError:
            pass
    return Event(after + 1, final_event(job), job_to_dict(job))
