"""Stopping a model call from another thread: the job's end watcher cancels, the open
stream is closed at once and the call raises `Cancelled`."""
from __future__ import annotations

import threading
from typing import Callable


class Cancelled(Exception):
    """The job ended elsewhere (it was cancelled) while the model was answering."""


class CancelToken:
    """Set from another thread to stop a model call: the open stream is closed at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True if cancelled meanwhile."""
        return self._event.wait(seconds)

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                pass  # the stream may already be closed

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()
