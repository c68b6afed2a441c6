"""Holding a claimed job (shared/jobs claims it; the job row is the lock): a heartbeat
that renews its lease while the model answers, and a watcher that stops the model call
the moment the job is ended elsewhere."""
from __future__ import annotations

import logging
import threading

from shared.bootstrap import Services
from shared.cancel import CancelToken
from shared.events import EndSubscription
from shared.jobs import Claim

log = logging.getLogger("parley.worker")

class Heartbeat:
    """Extends the lease while the model answers, so a live job is never taken
    over; a lease that can no longer be extended means the job is no longer
    ours (cancelled, or taken over), and the model call is cancelled."""

    def __init__(self, records, claim: Claim, token: CancelToken):
        self.records, self.claim, self.token = records, claim, token  # records: worker/records.py's port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.records.lease_seconds / 3):
            try:
                extended = self.records.renew(self.claim)
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
