"""Celery wiring both sides share. The API sends tasks by these names only."""
from __future__ import annotations

import logging
from functools import cached_property
from typing import Callable

from celery import Celery

from shared.broker import TRANSPORT, transport_for
from shared.config import Settings

log = logging.getLogger("parley.tasks")

REPLY_TASK = "parley.reply"
CHAT_QUEUE = "parley.turns"
# Webhooks have their own queue (and worker), so a slow receiver never delays a turn.
WEBHOOK_TASK = "parley.deliver_webhook"
WEBHOOK_QUEUE = "parley.webhooks"
# Writes a new fork's log objects (worker/forks.py); on the turn queue, where workers are.
FORK_LOG_TASK = "parley.copy_fork_log"
# Message header with the id of the API request that sent a task, for the worker's logs.
REQUEST_ID_HEADER = "request_id"


def make_celery(settings: Settings, name: str) -> Celery:
    app = Celery(name, set_as_current=False)
    app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_transport=transport_for(settings.celery_broker_url),  # one publishing client: shared/broker.py
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CHAT_QUEUE,
        task_routes={REPLY_TASK: {"queue": CHAT_QUEUE}, WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
                     FORK_LOG_TASK: {"queue": CHAT_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        # A delivered task may run for the model's timeout times its retries;
        # the broker must not hand it to another worker before that.
        broker_transport_options={"visibility_timeout": settings.task_soft_time_limit_seconds * 2},
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        # Flower shows each task from the worker's events (received, started, succeeded);
        # a `task-sent` event from the API as well would be one more Redis publish per
        # message there and one more event for Flower to digest, for the same task list.
        worker_send_task_events=True,
        task_send_sent_event=False,
    )
    return app


class Dispatcher:
    """Sends tasks by name, carrying job ids only. The job row is committed
    before the send, so a failed send leaves the work for the sweeper."""

    def __init__(self, celery: Celery, request_id: Callable[[], str | None] | None = None):
        self.celery, self.request_id = celery, request_id

    @cached_property
    def _declare(self) -> dict:
        """On Redis a task goes straight onto its queue's list (the default exchange), and
        declaring the queue first changes nothing there; kombu still copied the queue's
        entities on every send to find it declared (a fifth of a send's CPU). Other
        brokers keep Celery's declaration: on AMQP, a message for a queue that does not
        exist yet would be dropped."""
        return {"declare": []} if self.celery.conf.broker_transport == TRANSPORT else {}

    def turn(self, job_id: object) -> None:
        self._send(REPLY_TASK, job_id)

    def webhook(self, job_id: object, countdown: float | None = None) -> None:
        self._send(WEBHOOK_TASK, job_id, countdown)

    def fork_log(self, conversation_id: object) -> None:
        self._send(FORK_LOG_TASK, conversation_id)

    def _send(self, task: str, job_id: object, countdown: float | None = None) -> None:
        try:
            request_id = self.request_id() if self.request_id else None
            args = [str(job_id)]
            # The task's arguments as Flower shows them, given rather than made by Celery's
            # saferepr (its size-bounded walk was a tenth of a send for one short string).
            self.celery.send_task(task, args=args, argsrepr=repr(args), kwargsrepr="{}", countdown=countdown,
                                  headers={REQUEST_ID_HEADER: request_id} if request_id else None, **self._declare)
        except Exception as error:
            log.warning("could not send %s for %s (the sweeper will): %s", task, job_id, error)
