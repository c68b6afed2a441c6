"""Server-Sent Events: a job's events as they happen, resumable by event id.

An open stream holds neither a thread nor a connection of its own: it waits on an
Event that the API process's one subscription sets when its job has new events
(api/waits.py), then reads them with one XRANGE on a pooled Redis connection. Under
gunicorn's gevent worker it is a greenlet. PostgreSQL is read once when the stream
opens, and again only when the process's row loop finds its job ended or gone: a
worker that died between commit and publish, or events that expired.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Iterator

import redis
from flask import Response, g, request

from api.context import ctx
from api.errors import ApiError
from api.waits import DOWN_RECHECK_SECONDS, JobEndWaits
from shared.bootstrap import Services
from shared.db import one_statement, reading
from shared.events import Event
from shared.jobs import final_event, job_to_dict
from shared.jobs.sql import STATUSES
from shared.models import FINAL_STATUSES, Job

log = logging.getLogger("parley.api")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_RESPONSE = {"description": "A text/event-stream of the job's events",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}
RETRY_AFTER_SECONDS = 5  # open streams end as their replies do: seconds, not minutes


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


def _too_many(cap: int) -> ApiError:
    return ApiError(429, "too_many_streams",
                    f"Too many open streams: at most {cap} event streams and long-polls at once per user "
                    f"(MAX_OPEN_STREAMS_PER_USER, per API process). Close one, or retry later.",
                    {"Retry-After": str(RETRY_AFTER_SECONDS)})


def check_stream_slot() -> None:
    """429 if the caller is at the cap already; before a submit-and-stream makes its job
    (a job must not be made for a stream that would then be refused)."""
    cap, waits = ctx().services.settings.max_open_streams_per_user, ctx().waits
    if not waits.hold(g.user.id, cap):
        raise _too_many(cap)
    waits.release(g.user.id)


def hold_stream_slot(services: Services) -> JobEndWaits:
    """Count the caller's open stream or long-poll (released by the caller); 429 at the cap.
    Also starts the process's row loop, which looks at the rows of every waited-on job."""
    cap, waits = services.settings.max_open_streams_per_user, ctx().waits
    waits.check_rows(lambda ids: final_or_gone(services, ids), services.settings.sse_ping_seconds)
    if not waits.hold(g.user.id, cap):
        raise _too_many(cap)
    return waits


def final_or_gone(services: Services, job_ids: list[str]) -> set[str]:
    """Those of the jobs that ended, or are gone with their conversation."""
    with one_statement(services.engine) as connection:
        found = {str(job_id): status for job_id, status in connection.execute(STATUSES, {"ids": job_ids})}
    return {j for j in job_ids if found.get(j, "gone") in (*FINAL_STATUSES, "gone")}


def sse_response(services: Services, job_id: str, after: int, headers: dict | None = None) -> Response:
    user_id = g.user.id
    waits = hold_stream_slot(services)
    released = []

    def release() -> None:
        if not released:  # the WSGI server closes the response once, but be sure
            released.append(True)
            waits.release(user_id)

    try:
        response = Response(job_events(services, waits, job_id, after), mimetype="text/event-stream",
                            headers={**SSE_HEADERS, **(headers or {})})
    except BaseException:
        release()
        raise
    response.call_on_close(release)  # also when the stream never started (client gone at once)
    return response


def job_events(services: Services, waits: JobEndWaits, job_id: str, after: int) -> Iterator[str]:
    """Events numbered above `after`, then the final one; pings while quiet."""
    events, ping = services.events, services.settings.sse_ping_seconds
    with waits.watch(job_id) as watch:  # before the first read: nothing appended after it is missed
        look_at_row, quiet_since = True, time.monotonic()  # the row: before waiting, then when told
        read, batch = True, []
        while True:
            if read:
                watch.woken.clear()
                try:
                    batch = events.read(job_id, after)
                except redis.RedisError as error:
                    log.warning("event stream of job %s: Redis failed: %s", job_id, error)
                    batch = None
                for event in batch or ():
                    yield event.to_sse()
                    after = event.id
                    if event.final:
                        return
                if batch:
                    quiet_since = time.monotonic()
            if look_at_row or watch.look_at_row:
                look_at_row = watch.look_at_row = False
                end = _end_without_event(services, job_id, after, redis_ok=batch is not None)
                if end is _GONE:
                    return
                if end is not None:
                    yield end.to_sse()
                    return
            if batch and len(batch) >= events.READ_COUNT:
                continue  # more where these came from
            # Subscribed: sleep until woken, reading nothing meanwhile. The subscription
            # down but Redis up: read every second, as nothing will wake us. Redis down:
            # try again at the next ping.
            polling = batch is not None and not waits.live
            wake_in = ping - (time.monotonic() - quiet_since)
            woken = watch.woken.wait(max(min(wake_in, DOWN_RECHECK_SECONDS) if polling else wake_in, 0))
            read = woken or polling or batch is None
            if not woken and time.monotonic() - quiet_since >= ping:
                yield ": ping\n\n"
                quiet_since = time.monotonic()


_GONE = Event(0, "", {})  # the job was deleted with its conversation


def _end_without_event(services: Services, job_id: str, after: int, redis_ok: bool) -> Event | None:
    """The job's end when the stream cannot give it (events expired, Redis lost them,
    or the worker died before publishing); None while the stream will."""
    with reading(services.sessions) as session:
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
