"""Webhook delivery: POST the final job to its `callback_url`, signed, retried with backoff.

Runs as its own task on its own queue, so a slow receiver never delays a turn.
Each attempt is recorded on the job; the sweeper re-sends deliveries whose task
was lost. Signature: see shared/webhooks.sign. How one attempt is bounded and where it
may connect: worker/webhook_client.py.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

from shared.backoff import exponential
from shared.bootstrap import Services
from shared.db import reading
from shared.jobs import final_event, job_to_dict
from shared.jobs.sql import WEBHOOK_CLAIM, WEBHOOK_RECORD
from shared.models import Job, User
from shared.tasks import Dispatcher
from shared.config import Settings
from shared.webhooks import sign
from worker.webhook_client import Attempt, WebhookClient

log = logging.getLogger("parley.webhooks")

MAX_BACKOFF_SECONDS = 600.0

_client: tuple[Settings, WebhookClient] | None = None
_client_lock = threading.Lock()


def client_for(settings: Settings) -> WebhookClient:
    """The process's webhook client, made on first use (its TLS context is costly to build)."""
    global _client
    with _client_lock:
        if _client is None or _client[0] is not settings:
            _client = settings, WebhookClient(settings.webhook_timeout_seconds,
                                              allow_private=settings.webhook_allow_private_addresses,
                                              proxy_url=settings.webhook_proxy_url)
        return _client[1]


def deliver(services: Services, job_id: str, dispatcher: Dispatcher, client: WebhookClient | None = None) -> None:
    """One delivery attempt, if the job's webhook is due."""
    settings = services.settings
    client = client or client_for(settings)
    job_uuid = uuid.UUID(job_id)
    with services.engine.begin() as connection:
        held = connection.execute(WEBHOOK_CLAIM, {"id": job_uuid, "hold": client.timeout + 30}).first()
    if held is None:
        return  # delivered, given up, not due yet, or another deliverer has it
    with reading(services.sessions) as session:
        job = session.get(Job, job_uuid)
        secret = session.get(User, job.user_id).webhook_secret
        payload = job_to_dict(job)
        url, event, finished_at = job.callback_url, final_event(job), job.finished_at
    number = len(payload.pop("webhook")["attempts"]) + 1  # the receiver gets the job, not our bookkeeping

    attempt = _post(client, url, payload, event, number, secret or "")
    # jitter, so a receiver that recovers is not hit all at once
    delay = exponential(settings.webhook_backoff_seconds, number - 1, MAX_BACKOFF_SECONDS, spread=(0.5, 1.0))
    window_ends = finished_at + timedelta(seconds=settings.webhook_retry_window_seconds)
    in_window = datetime.now(timezone.utc) + timedelta(seconds=delay) <= window_ends
    retry = not attempt.ok and not attempt.permanent and in_window
    status = "delivered" if attempt.ok else ("pending" if retry else "failed")
    entry = {"attempt": number, "at": datetime.now(timezone.utc).isoformat(), "status_code": attempt.status_code,
             "error": attempt.error, "duration_ms": attempt.duration_ms}
    with services.engine.begin() as connection:
        connection.execute(WEBHOOK_RECORD, {"id": job_uuid, "status": status, "attempt": json.dumps([entry]),
                                     "delay": delay if retry else None})
    log.info("webhook for job %s attempt %s: %s", job_id, number, attempt.status_code or attempt.error)
    if retry:
        dispatcher.webhook(job_id, countdown=delay)


def _post(client: WebhookClient, url: str, payload: dict, event: str, number: int, secret: str) -> Attempt:
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
    return client.post(url, body, headers)
