"""Long-polls: one Redis subscription per API process to every job's end, shared by
all requests waiting on a job, instead of a Redis connection and a subscription each.

A waiting request also looks at its job's row every RECHECK_SECONDS (every
DOWN_RECHECK_SECONDS while the subscription is down), so an end that was never
published, or published while the subscription was reconnecting, is still seen.
A long-poll still needs Redis to begin: with Redis down it fails (503) as before.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from shared.events import EndSubscription, JobEvents

RECHECK_SECONDS = 5.0
DOWN_RECHECK_SECONDS = 1.0
SUBSCRIBE_WAIT_SECONDS = 2.0  # a request that comes before the first subscribe waits this long for it


class JobEndWaits:
    def __init__(self, events: JobEvents):
        self.events = events
        self._waiting: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._ends = EndSubscription(events, self._ended, "job-end-waits")
        self._started = False

    def wait(self, job_id: str, timeout: float, is_final: Callable[[], bool]) -> None:
        """Return when `is_final()` holds, the job's end is published, or `timeout` passes;
        raises Redis's error if Redis does not answer at the start."""
        deadline = time.monotonic() + timeout
        self._start()
        self._ends.tried.wait(min(timeout, SUBSCRIBE_WAIT_SECONDS))
        ended = threading.Event()
        with self._lock:  # listening before the first look, so an end between the two is not missed
            self._waiting.setdefault(job_id, set()).add(ended)
        try:
            if self.events.ended(job_id):
                return
            while not is_final():
                remaining = deadline - time.monotonic()
                recheck = RECHECK_SECONDS if self._ends.subscribed.is_set() else DOWN_RECHECK_SECONDS
                if remaining <= 0 or ended.wait(min(remaining, recheck)):
                    return
        finally:
            with self._lock:
                waiters = self._waiting.get(job_id)
                if waiters is not None:
                    waiters.discard(ended)
                    if not waiters:
                        del self._waiting[job_id]

    def _start(self) -> None:
        with self._lock:
            if not self._started:  # on first use, never at import (and after gunicorn's fork)
                self._started = True
                self._ends.start()

    def close(self) -> None:
        """Stop listening (within a second); for tests."""
        self._ends.stop()

    def _ended(self, job_id: str) -> None:
        with self._lock:
            waiters = list(self._waiting.get(job_id, ()))
        for ended in waiters:
            ended.set()
