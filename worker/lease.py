"""Claiming a job and holding it: the job row is the lock."""
from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field

from sqlalchemy import text

from shared.bootstrap import Services
from shared.events import EndSubscription
from shared.jobs import nothing_before
from shared.cancel import CancelToken

log = logging.getLogger("parley.worker")

# A job runs when it is queued (or its holder's lease ran out) and nothing before it
# in its conversation is unfinished (shared/jobs.py's ordering rule).
_CLAIM = text(f"""
    UPDATE jobs SET status = 'running', attempts = attempts + 1, worker = :worker,
           takeovers = takeovers + (CASE WHEN status = 'running' THEN 1 ELSE 0 END),
           started_at = coalesce(started_at, now()),
           lease_expires_at = now() + make_interval(secs => :lease)
     WHERE id = :id
       AND (status = 'queued'
            OR (status = 'running' AND lease_expires_at < now() AND takeovers + 1 < :max_attempts))
       AND {nothing_before("jobs", "earlier")}
 RETURNING id, user_id, conversation_id, request, attempts, created_at
""")

_EXTEND = text("""
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease)
     WHERE id = :id AND status = 'running' AND attempts = :attempt
""")

# A handed-back job keeps the time it was handed back in lease_expires_at: its
# task retries it with backoff, and the sweeper leaves it to those retries (see
# retry.py) instead of re-sending it, and calling the model, at every sweep.
_RELEASE = text("""
    UPDATE jobs SET status = 'queued', lease_expires_at = now()
     WHERE id = :id AND status = 'running' AND attempts = :attempt
""")


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    user_id: uuid.UUID
    conversation_id: uuid.UUID
    content: str | list[dict]  # the request's text; blocks once its attachments are added (shared/files.py)
    attempt: int
    created_at: object
    attachments: tuple[str, ...] = ()  # file ids, in the order attached
    request: dict = field(default_factory=dict)  # the whole request: tools, a continuation's round


def claim(services: Services, job_id: uuid.UUID, worker: str | None = None) -> Claim | None:
    with services.engine.begin() as connection:
        row = connection.execute(
            _CLAIM, {"id": job_id, "lease": services.settings.job_lease_seconds, "worker": worker,
                     "max_attempts": services.settings.max_job_attempts}).first()
    if row is None:
        return None
    return Claim(row.id, row.user_id, row.conversation_id, row.request["content"], row.attempts, row.created_at,
                 tuple(row.request.get("attachments") or ()), request=row.request)


def renew(services: Services, claim: Claim) -> bool:
    """Extend the lease now; False if the job is no longer held by this claim
    (cancelled, deleted, or taken over after the lease ran out)."""
    with services.engine.begin() as connection:
        return connection.execute(_EXTEND, {"id": claim.job_id, "lease": services.settings.job_lease_seconds,
                                            "attempt": claim.attempt}).rowcount == 1


def release(services: Services, claim: Claim) -> None:
    """Hand a job back to the queue after a failure that was not the job's fault."""
    with services.engine.begin() as connection:
        connection.execute(_RELEASE, {"id": claim.job_id, "attempt": claim.attempt})


class Heartbeat:
    """Extends the lease while the model answers, so a live job is never taken
    over; a lease that can no longer be extended means the job is no longer
    ours (cancelled, or taken over), and the model call is cancelled."""

    def __init__(self, services: Services, claim: Claim, token: CancelToken):
        self.services, self.claim, self.token = services, claim, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.job_id}", daemon=True)

    def _run(self) -> None:
        lease = self.services.settings.job_lease_seconds
        while not self._stop.wait(lease / 3):
            try:
                with self.services.engine.begin() as connection:
                    extended = connection.execute(_EXTEND, {"id": self.claim.job_id, "lease": lease,
                                                            "attempt": self.claim.attempt}).rowcount
            except Exception:  # a missed beat is retried at the next one
                continue
            if not extended:
                self.token.cancel()
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class EndWatcher:
    """One subscription per worker process to every job's end. A job whose end is
    published while this process still runs it was ended elsewhere (a user's
    cancel): its model call is stopped at once."""

    def __init__(self, services: Services):
        self._tokens: dict[str, CancelToken] = {}
        self._lock = threading.Lock()
        self._ends = EndSubscription(services.events, self._ended, "end-watcher")  # leases tell while it is down

    def start(self) -> "EndWatcher":
        self._ends.start()
        return self

    def stop(self) -> None:
        self._ends.stop()

    def watch(self, job_id: object) -> CancelToken:
        token = CancelToken()
        with self._lock:
            self._tokens[str(job_id)] = token
        return token

    def forget(self, job_id: object) -> None:
        with self._lock:
            self._tokens.pop(str(job_id), None)

    def _ended(self, job_id: str) -> None:
        with self._lock:
            token = self._tokens.pop(job_id, None)
        if token is not None:
            token.cancel()
