"""The worker's entry module: `celery -A worker.celery_app worker`.

Services are built once per worker process, on first use, never at import.
"""
from __future__ import annotations

import logging
import threading

from celery import Task, shared_task
from celery.signals import worker_ready, worker_shutdown

from shared.bootstrap import Services, bootstrap
from shared.config import load_settings
from shared.logs import configure_logging
from shared.tasks import REPLY_TASK, make_celery
from worker.pipeline import run_turn
from worker.sweeper import Sweeper

settings = load_settings()
configure_logging(settings.log_level)
app = make_celery(settings, "parley-worker")
app.set_default()

log = logging.getLogger("parley.worker")
_services: Services | None = None
_services_lock = threading.Lock()
_sweeper: Sweeper | None = None


def services() -> Services:
    global _services
    with _services_lock:
        if _services is None:
            _services = bootstrap(settings, with_model=True, pool_size=settings.worker_concurrency + 2)
        return _services


def dispatch(job_id: str) -> None:
    """Send the next turn of a conversation; if the broker is down the sweeper re-sends it."""
    try:
        app.send_task(REPLY_TASK, args=[job_id])
    except Exception as error:
        log.warning("could not send job %s (the sweeper will): %s", job_id, error)


@worker_ready.connect
def _start_sweeper(**_) -> None:
    global _sweeper
    _sweeper = Sweeper(services(), dispatch)
    _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_) -> None:
    if _sweeper is not None:
        _sweeper.stop()


class TurnTask(Task):
    """Base for turn tasks: hard and soft limits, and infrastructure errors become retries."""
    acks_late = True
    reject_on_worker_lost = True
    soft_time_limit = settings.task_soft_time_limit_seconds
    max_retries = None


@shared_task(name=REPLY_TASK, bind=True, base=TurnTask)
def reply(self: Task, job_id: str) -> None:
    """Turn job `job_id` into one turn of its conversation."""
    outcome = run_turn(services(), job_id, dispatch)
    if outcome.status == "busy":
        raise self.retry(countdown=outcome.retry_after)
