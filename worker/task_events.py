"""Task events for Flower: two a turn instead of three, published in batches.

A Celery worker sends `task-received` when a task arrives and `task-started` when a pool
thread takes it, then `task-succeeded` (or failed, retried…). Each is built, serialised
and published by the worker, and Flower digests each one (its state, its search index,
its metrics): about 0.7 ms of CPU an event between them at saturation. With the thread
pool and one task prefetched per slot, a turn starts the moment it is received, so the
two first events say the same thing. No Celery setting sends some task events and not
others (`worker_send_task_events` is all or none; `task_track_started` is for result
backends), so this dispatcher holds back a `task-received` and sends its fields (name,
args, retries…) with the `task-started` that follows: Flower shows the task as started,
with its name and job id, then as it ended. A task received with an ETA (a busy turn's
retry) waits in the worker first, so its `task-received` is sent as it comes.

Celery already buffers task events and publishes them as one message (`task.multi`), but
it flushes on the event loop's next turn, so at 40 turns a second nearly every event was
its own Redis publish (~0.3 ms of the worker's CPU each). This dispatcher has the loop
flush FLUSH_SECONDS after the first event buffered (and at Celery's 24 events, as before),
so Flower sees an event at most that much later, and an idle worker sets no timer. Events
buffered when the broker connection is replaced go to the new dispatcher, as Celery
does for its offline buffer.
"""
from __future__ import annotations

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher

FLUSH_SECONDS = 0.1


class MergedStartDispatcher(EventDispatcher):
    """`task-received` (without an ETA) sent as part of the task's `task-started`; task
    events published in batches, FLUSH_SECONDS after the first, by the worker's loop."""

    def __init__(self, *args, on_send_buffered=None, **kwargs):
        # Celery passes its consumer's flush-on-the-loop's-next-turn callback; the loop
        # (its hub) flushes later instead. Without a loop (no hub), Celery's way stays.
        self._hub = getattr(getattr(on_send_buffered, "__self__", None), "hub", None)
        self._flush_due = False
        # Received, not yet started: at most the tasks this worker has prefetched, since
        # every task that leaves the worker sends an event that takes its entry out.
        self._held: dict[str, dict] = {}
        super().__init__(*args, on_send_buffered=self._flush_later if self._hub else on_send_buffered, **kwargs)

    def send(self, type, blind=False, utcoffset=None, retry=False, retry_policy=None, **fields):  # noqa: A002
        if not self.enabled:
            return None
        if type == "task-received" and not fields.get("eta"):
            self._held[fields["uuid"]] = fields
            return None
        if type.startswith("task-"):
            received = self._held.pop(fields.get("uuid"), None)
            if received is not None and type == "task-started":
                fields = {**received, **fields}
            elif received is not None:  # revoked or rejected before it started: say both
                super().send("task-received", **received)
        extra = {"utcoffset": utcoffset} if utcoffset is not None else {}
        return super().send(type, blind=blind, retry=retry, retry_policy=retry_policy, **extra, **fields)

    def _flush_later(self) -> None:
        """After each buffered event, in any thread: the first since the last flush has
        the loop set a timer (`call_soon` is the hub's thread-safe way in; its timers
        are not)."""
        if not self._flush_due:
            self._flush_due = True
            self._hub.call_soon(self._hub.call_later, FLUSH_SECONDS, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_due = False  # first: an event buffered during the flush sets a new timer
        self.flush()

    def extend_buffer(self, other: EventDispatcher) -> None:
        super().extend_buffer(other)
        for group, events in getattr(other, "_group_buffer", {}).items():
            self._group_buffer[group].extend(events)
        self._held.update(getattr(other, "_held", {}))


class TaskEvents(Events):
    """`app.events` with the dispatcher above (`events_cls`, worker/celery_app.py)."""

    dispatcher_cls = "worker.task_events:MergedStartDispatcher"
