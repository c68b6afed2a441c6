"""Task events for Flower: two a turn instead of three.

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
"""
from __future__ import annotations

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher


class MergedStartDispatcher(EventDispatcher):
    """`task-received` (without an ETA) sent as part of the task's `task-started`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Received, not yet started: at most the tasks this worker has prefetched, since
        # every task that leaves the worker sends an event that takes its entry out.
        self._held: dict[str, dict] = {}

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


class TaskEvents(Events):
    """`app.events` with the dispatcher above (`events_cls`, worker/celery_app.py)."""

    dispatcher_cls = "worker.task_events:MergedStartDispatcher"
