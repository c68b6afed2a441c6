"""Waiting without a connection each: one Redis subscription per API process wakes every
long-poll and every open event stream it holds.

Two subscriptions: every job's end (long-polls answer), and, while the process holds
open streams, every append to any job's events (the streams of that job read their new
events with one XRANGE on a pooled connection). Appends are most of a turn's messages
(queued, started, deltas, end), so a process serving only long-polls does not take them:
the second subscription starts with the first stream and ends IDLE_APPENDS_SECONDS after
the last. An idle stream or long-poll holds a greenlet (gunicorn's gevent worker) and an
Event, no Redis or PostgreSQL connection.

Ends that were never published (a worker that died between commit and publish) or
published while the subscription was reconnecting are still seen: one loop per process
looks at the rows of every job it waits on, in one query per thousand jobs, every
ping interval (RowCheck). Without that loop (unit tests) a long-poll looks at its own
row every RECHECK_SECONDS (DOWN_RECHECK_SECONDS while the subscription is down).
A long-poll still needs Redis to begin: with Redis down it fails (503) as before.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

from shared.events import JobEvents, Subscription, append_subscription, end_subscription

log = logging.getLogger("parley.api")

RECHECK_SECONDS = 5.0
DOWN_RECHECK_SECONDS = 1.0
SUBSCRIBE_WAIT_SECONDS = 2.0  # a request that comes before the first subscribe waits this long for it
ROWS_PER_QUERY = 1000
IDLE_APPENDS_SECONDS = 30.0  # without streams this long, a process stops taking every job's appends


class Watch:
    """One open stream's wake-up call: `woken` when its job has new events or its row
    should be looked at (`look_at_row`)."""

    __slots__ = ("woken", "look_at_row")

    def __init__(self) -> None:
        self.woken, self.look_at_row = threading.Event(), False


class JobEndWaits:
    def __init__(self, events: JobEvents):
        self.events = events
        self._waiting: dict[str, set[threading.Event]] = {}
        self._streams: dict[str, set[Watch]] = {}
        self._open: dict[object, int] = {}  # open streams and long-polls per user, this process
        self._lock = threading.Lock()
        self._ends = end_subscription(events, self._ended, "job-end-waits")
        self._appends: Subscription | None = None  # while streams are open (and IDLE_APPENDS_SECONDS after)
        self._no_streams_since = time.monotonic()
        self._started = False
        self._rows: RowCheck | None = None

    @property
    def live(self) -> bool:
        """The appends' subscription holds: streams need not look for events on their own."""
        appends = self._appends
        return appends is not None and appends.subscribed.is_set()

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
                if self._rows is not None:  # the process's row loop looks for us
                    recheck = remaining
                else:
                    recheck = RECHECK_SECONDS if self.live else DOWN_RECHECK_SECONDS
                if remaining <= 0 or ended.wait(min(remaining, recheck)):
                    return
        finally:
            with self._lock:
                _discard(self._waiting, job_id, ended)

    @contextmanager
    def watch(self, job_id: str) -> Iterator[Watch]:
        """Be woken while inside: on the job's new events, its end, or a look at its row."""
        self._start()
        watch = Watch()
        with self._lock:
            self._streams.setdefault(job_id, set()).add(watch)
            if self._appends is None:
                self._appends = append_subscription(self.events, self._added, "job-appends", self._appends_idle)
                self._appends.start()
            appends = self._appends
        try:
            appends.tried.wait(SUBSCRIBE_WAIT_SECONDS)
            yield watch
        finally:
            with self._lock:
                _discard(self._streams, job_id, watch)
                if not self._streams:
                    self._no_streams_since = time.monotonic()

    def hold(self, user_id: object, cap: int) -> bool:
        """Count one more open stream or long-poll of the user; False at the cap.
        Counted per process: no Redis round trip per stream, nothing left counted when a
        process dies, and what the cap protects (connections, memory) is the process's."""
        with self._lock:
            if self._open.get(user_id, 0) >= cap:
                return False
            self._open[user_id] = self._open.get(user_id, 0) + 1
            return True

    def release(self, user_id: object) -> None:
        with self._lock:
            left = self._open.get(user_id, 0) - 1
            if left > 0:
                self._open[user_id] = left
            else:
                self._open.pop(user_id, None)

    def check_rows(self, final_or_gone: Callable[[list[str]], Iterable[str]], every: float) -> None:
        """Start the process's row loop (once): `final_or_gone(job_ids)` names the jobs
        among them that ended or were deleted."""
        with self._lock:
            if self._rows is None:
                self._rows = RowCheck(self, final_or_gone, every)

    def waited_jobs(self) -> list[str]:
        with self._lock:
            return list({*self._streams, *self._waiting})

    def wake(self, job_id: str | None, look_at_row: bool = False) -> None:
        """Wake the streams (and, with `look_at_row`, the long-polls) of a job; of all jobs for None."""
        with self._lock:
            if job_id is None:
                watches = [w for ws in self._streams.values() for w in ws]
            else:
                watches = list(self._streams.get(job_id, ()))
            waiters = list(self._waiting.get(job_id, ())) if look_at_row else []
        for watch in watches:
            watch.look_at_row = watch.look_at_row or look_at_row
            watch.woken.set()
        for ended in waiters:
            ended.set()

    def _start(self) -> None:
        with self._lock:
            if not self._started:  # on first use, never at import (and after gunicorn's fork)
                self._started = True
                self._ends.start()

    def close(self) -> None:
        """Stop listening (within a second); for tests."""
        self._ends.stop()
        with self._lock:
            if self._appends is not None:
                self._appends.stop()
        if self._rows is not None:
            self._rows.stop.set()

    def _added(self, job_id: str | None) -> None:
        self.wake(job_id)

    def _appends_idle(self) -> bool:
        """Asked by the appends' subscription at least every LISTEN_SECONDS (shared/events.py):
        no streams for IDLE_APPENDS_SECONDS ends it (the next stream starts another)."""
        with self._lock:
            if self._streams or time.monotonic() - self._no_streams_since < IDLE_APPENDS_SECONDS:
                return False
            self._appends = None
            return True

    def _ended(self, job_id: str) -> None:
        with self._lock:
            waiters = list(self._waiting.get(job_id, ()))
        for ended in waiters:
            ended.set()
        self.wake(job_id)


class RowCheck:
    """Every `every` seconds, one query per ROWS_PER_QUERY waited-on jobs; the streams
    and long-polls of those that ended or are gone are woken to look at their row."""

    def __init__(self, waits: JobEndWaits, final_or_gone: Callable[[list[str]], Iterable[str]], every: float):
        self.waits, self.final_or_gone, self.every = waits, final_or_gone, every
        self.stop = threading.Event()
        threading.Thread(target=self._run, name="job-row-check", daemon=True).start()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            jobs = self.waits.waited_jobs()
            for start in range(0, len(jobs), ROWS_PER_QUERY):
                try:
                    for job_id in self.final_or_gone(jobs[start:start + ROWS_PER_QUERY]):
                        self.waits.wake(job_id, look_at_row=True)
                except Exception as error:  # the database is away: waiters keep waiting, as before
                    log.warning("open streams: looking at their jobs failed: %s", error)


def _discard(index: dict, job_id: str, item) -> None:
    """Take `item` out of the job's set, and the set out of `index` once it is empty."""
    items = index.get(job_id)
    if items is not None:
        items.discard(item)
        if not items:
            del index[job_id]
