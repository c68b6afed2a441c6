"""Celery wiring both sides share. The API sends tasks by these names only."""
from __future__ import annotations

from celery import Celery

from shared.config import Settings

REPLY_TASK = "parley.reply"
CHAT_QUEUE = "parley.turns"


def make_celery(settings: Settings, name: str) -> Celery:
    app = Celery(name, set_as_current=False)
    app.conf.update(
        broker_url=settings.celery_broker_url,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CHAT_QUEUE,
        task_routes={REPLY_TASK: {"queue": CHAT_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        # A delivered task may run for the model's timeout times its retries;
        # the broker must not hand it to another worker before that.
        broker_transport_options={"visibility_timeout": settings.task_soft_time_limit_seconds * 2},
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app
