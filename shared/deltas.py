"""`message.delta` events batched per job: one Redis call per DELTA_INTERVAL_SECONDS at most.

A model streams its reply in many small pieces, and one Redis call per piece costs
the worker a round trip and its CPU each time. The first piece after a quiet spell
is appended at once (time to first token is unchanged); pieces arriving within the
interval after it are held and appended together, still one event each, when the
interval ends (by one thread per process) or as soon as any other event of the job
is added, so readers see the same events in the same order, at most an interval late.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

log = logging.getLogger(__name__)

DELTA_INTERVAL_SECONDS = 0.025

# (job key, the events' data) -> the last event's number, or None if the job already ended
Append = Callable[[str, list[dict]], "int | None"]
T = TypeVar("T")


class _Window:
    """One job's open interval. `lock` is held from taking its deltas until they are
    appended, so a later append of the same job cannot overtake them."""
    __slots__ = ("lock", "held", "due", "closed")

    def __init__(self, due: float):
        self.lock = threading.Lock()
        self.held: list[dict] = []
        self.due, self.closed = due, False


class DeltaBatcher:
    def __init__(self, append: Append, interval: float = DELTA_INTERVAL_SECONDS):
        self._append, self.interval = append, interval
        self._windows: dict[str, _Window] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, key: str, data: dict) -> int | None:
        """Append now if the job's last append is an interval old, else hold: then 0."""
        while True:
            with self._changed:
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window(time.monotonic() + self.interval)
                    window.lock.acquire()  # new, so uncontended: nobody can flush it before this append
                    self._start()
                    self._changed.notify()
                    break
            with window.lock:
                if not window.closed:
                    window.held.append(data)
                    return 0
            # closed by the flusher meanwhile (a quiet interval): open a new one
        try:
            return self._append(key, [data])
        finally:
            window.lock.release()

    def flush(self, key: str, then: Callable[[list[dict]], T]) -> T:
        """`then(held)`: append the job's held deltas with the event that follows them,
        after any batch of them already on its way."""
        with self._changed:
            window = self._windows.pop(key, None)
        if window is None:
            return then([])
        with window.lock:
            window.closed = True
            return then(window.held)

    def _start(self) -> None:
        if self._thread is None:  # on first use, never at import
            self._thread = threading.Thread(target=self._run, name="delta-batcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        tick = self.interval / 2  # held text waits 1 to 1.5 intervals
        while True:
            with self._changed:
                while not self._windows:
                    self._changed.wait()
                now = time.monotonic()
                due = [(key, window) for key, window in self._windows.items() if window.due <= now]
            for key, window in due:
                self._flush_due(key, window)
            time.sleep(tick)

    def _flush_due(self, key: str, window: _Window) -> None:
        with window.lock:
            if window.closed:
                return
            if not window.held:  # a quiet interval: the job's next delta goes at once
                window.closed = True
                with self._changed:
                    if self._windows.get(key) is window:
                        del self._windows[key]
                return
            held, window.held = window.held, []
            window.due = time.monotonic() + self.interval
            try:
                self._append(key, held)
            except Exception as error:  # the worker's own next append reports Redis failures
                log.warning("job %s: %d held deltas not appended: %s", key, len(held), error)
