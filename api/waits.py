"""Long-polls: one Redis subscription per API process to every job's end, shared by
all requests waiting on a job, instead of a Redis connection and a subscription each.

A waiting request also looks at its job's row every RECHECK_SECONDS (every
DOWN_RECHECK_SECONDS while the subscription is down), so an end that was never
published, or published while the subscription was reconnecting, is still seen.
A long-poll still needs Redis to begin: with Redis down it fails (503) as before.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from shared.events import JobEvents, job_id_of

log = logging.getLogger("parley.api")

RECHECK_SECONDS = 5.0
DOWN_RECHECK_SECONDS = 1.0
SUBSCRIBE_WAIT_SECONDS = 2.0  # a request that comes before the first subscribe waits this long for it


class JobEndWaits:
    def __init__(self, events: JobEvents):
        self.events = events
        self._waiting: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._tried = threading.Event()  # the first subscribe is done, or failed
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def wait(self, job_id: str, timeout: float, is_final: Callable[[], bool]) -> None:
        """Return when `is_final()` holds, the job's end is published, or `timeout` passes;
        raises Redis's error if Redis does not answer at the start."""
        deadline = time.monotonic() + timeout
        self._start()
        self._tried.wait(min(timeout, SUBSCRIBE_WAIT_SECONDS))
        ended = threading.Event()
        with self._lock:  # listening before the first look, so an end between the two is not missed
            self._waiting.setdefault(job_id, set()).add(ended)
        try:
            if self.events.ended(job_id):
                return
            while not is_final():
                remaining = deadline - time.monotonic()
                recheck = RECHECK_SECONDS if self._subscribed.is_set() else DOWN_RECHECK_SECONDS
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
            if self._thread is None:  # on first use, never at import (and after gunicorn's fork)
                self._thread = threading.Thread(target=self._listen, name="job-end-waits", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop listening (within a second); for tests."""
        self._closed.set()

    def _listen(self) -> None:
        while not self._closed.is_set():
            pubsub = None
            try:
                pubsub = self.events.subscribe_all_finished()
                pubsub.get_message(timeout=1.0)  # the psubscribe confirmation: from here on nothing is missed
                self._subscribed.set()
                self._tried.set()
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._ended(job_id_of(message["channel"]))
            except Exception as error:  # Redis is down: waiting requests look at their rows meanwhile
                if self._subscribed.is_set():
                    log.warning("long-poll subscription lost, reconnecting: %s", error)
                self._subscribed.clear()
                self._tried.set()
                self._closed.wait(1.0)
            finally:
                if pubsub is not None:
                    pubsub.close()

    def _ended(self, job_id: str) -> None:
        with self._lock:
            waiters = list(self._waiting.get(job_id, ()))
        for ended in waiters:
            ended.set()
