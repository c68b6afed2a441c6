"""Webhook delivery: POST the final job to its `callback_url`, signed, retried with backoff.

Runs as its own task on its own queue, so a slow receiver never delays a turn.
Each attempt is recorded on the job; the sweeper re-sends deliveries whose task
was lost. Signature: see shared/webhooks.sign.
"""
from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx2
from sqlalchemy import text

from shared.bootstrap import Services
from shared.jobs import final_event, job_to_dict
from shared.models import Job, User
from shared.tasks import Dispatcher
from shared.webhooks import blocked_address, sign

log = logging.getLogger("parley.webhooks")

MAX_BACKOFF_SECONDS = 600.0

# A delivery is held for the timeout plus a margin; if its deliverer dies the
# hold runs out and the sweeper sends it again.
_CLAIM = text("""
    UPDATE jobs SET webhook_next_at = now() + make_interval(secs => :hold)
     WHERE id = :id AND webhook_status = 'pending' AND webhook_next_at <= now()
 RETURNING id
""")

_RECORD = text("""
    UPDATE jobs SET webhook_status = :status,
           webhook_attempts = webhook_attempts || CAST(:attempt AS jsonb),
           webhook_next_at = now() + make_interval(secs => CAST(:delay AS double precision))
     WHERE id = :id
""")


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def deliver(services: Services, job_id: str, dispatcher: Dispatcher) -> None:
    """One delivery attempt, if the job's webhook is due."""
    settings = services.settings
    job_uuid = uuid.UUID(job_id)
    with services.engine.begin() as connection:
        held = connection.execute(_CLAIM, {"id": job_uuid, "hold": settings.webhook_timeout_seconds + 30}).first()
    if held is None:
        return  # delivered, given up, not due yet, or another deliverer has it
    with services.sessions() as session:
        job = session.get(Job, job_uuid)
        secret = session.get(User, job.user_id).webhook_secret
        payload = job_to_dict(job)
        url, event, finished_at = job.callback_url, final_event(job), job.finished_at
    number = len(payload.pop("webhook")["attempts"]) + 1  # the receiver gets the job, not our bookkeeping

    blocked = None if settings.webhook_allow_private_addresses else blocked_address(url)
    if blocked:
        attempt, permanent = Attempt(None, f"refused: {blocked}", 0), True
    else:
        attempt, permanent = _post(url, payload, event, number, secret or "", settings.webhook_timeout_seconds), False
    delay = min(settings.webhook_backoff_seconds * 2 ** (number - 1), MAX_BACKOFF_SECONDS)
    delay *= random.uniform(0.5, 1.0)  # jitter, so a receiver that recovers is not hit all at once
    window_ends = finished_at + timedelta(seconds=settings.webhook_retry_window_seconds)
    retry = not attempt.ok and not permanent and datetime.now(timezone.utc) + timedelta(seconds=delay) <= window_ends
    status = "delivered" if attempt.ok else ("pending" if retry else "failed")
    entry = {"attempt": number, "at": datetime.now(timezone.utc).isoformat(), "status_code": attempt.status_code,
             "error": attempt.error, "duration_ms": attempt.duration_ms}
    with services.engine.begin() as connection:
        connection.execute(_RECORD, {"id": job_uuid, "status": status, "attempt": json.dumps([entry]),
                                     "delay": delay if retry else None})
    log.info("webhook for job %s attempt %s: %s", job_id, number, attempt.status_code or attempt.error)
    if retry:
        dispatcher.webhook(job_id, countdown=delay)


def _post(url: str, payload: dict, event: str, number: int, secret: str, timeout: float) -> Attempt:
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Parley-Webhook/1",
        "Parley-Event": event,
        "Parley-Job-Id": payload["id"],
        "Parley-Delivery-Attempt": str(number),
        "Parley-Timestamp": timestamp,
        "Parley-Signature": sign(secret, timestamp, body),
    }
    started = time.monotonic()
    try:
        response = httpx2.post(url, content=body, headers=headers, timeout=timeout, follow_redirects=False)
        return Attempt(response.status_code, None, _ms_since(started))
    except httpx2.HTTPError as error:
        return Attempt(None, f"{type(error).__name__}: {error}"[:500], _ms_since(started))


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
