"""Holding claimed jobs (shared/jobs claims them; the job row is the lock): a keeper that
renews their leases while the model answers, and a watcher that stops a model call the
moment its job is ended elsewhere."""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from shared.bootstrap import Services
from shared.cancel import CancelToken
from shared.events import end_subscription
from shared.jobs import Claim

log = logging.getLogger("parley.worker")


class LeaseKeeper:
    """Extends the lease of every job held here, every third of JOB_LEASE_SECONDS, so a
    live job is never taken over; a lease that can no longer be extended means the job is
    no longer ours (cancelled, or taken over), and its model call is cancelled.

    One thread and one statement a beat for all the jobs a process holds, not a thread a
    turn (starting and joining one cost ~0.3 ms of CPU a turn, and 200 turns in flight
    were 200 more threads). The thread runs while anything is held and ends at the first
    beat with nothing held; the next hold starts another."""

    def __init__(self, records):
        self.records = records  # worker/records.py's port
        self._held: dict[object, tuple[Claim, CancelToken]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, claim: Claim, token: CancelToken) -> Iterator[None]:
        with self._lock:
            self._held[claim.job_id] = (claim, token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(claim.job_id, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.records.lease_seconds / 3)
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
                held = list(self._held.values())
            try:
                kept = self.records.renew_all([claim for claim, _ in held])
            except Exception as error:  # a missed beat is retried at the next one
                log.warning("could not renew %s leases: %s", len(held), error)
                continue
            for claim, token in held:
                if claim.job_id not in kept:
                    token.cancel()


class EndWatcher:
    """One subscription per worker process to every job's end. A job whose end is
    published while this process still runs it was ended elsewhere (a user's
    cancel): its model call is stopped at once."""

    def __init__(self, services: Services):
        self._tokens: dict[str, CancelToken] = {}
        self._lock = threading.Lock()
        self._ends = end_subscription(services.events, self._ended, "end-watcher")  # leases tell while it is down

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
