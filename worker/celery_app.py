"""The worker's entry module: `celery -A worker.celery_app worker`.

Services are built once per worker process, on first use, never at import.
"""
from __future__ import annotations

import gc
import logging
import threading

from celery import Task, shared_task
from celery.signals import worker_init, worker_ready, worker_shutdown

from shared.bootstrap import Services, bootstrap
from shared.catalog import require_current_models
from shared.config import load_settings
from shared.green import install as green_waits
from shared.local_stack import require
from shared.tasks import FORK_LOG_TASK, REPLY_TASK, WEBHOOK_TASK, Dispatcher, make_celery
from worker import observability
from worker.forks import copy_fork_log
from worker.lease import EndWatcher, LeaseKeeper
from worker.pipeline import Runtime, run_turn
from worker.records import TurnRecords
from worker.retry import backoff
from worker.sweeper import Sweeper
from worker.webhooks import deliver

green_waits()  # on the gevent pool (WORKER_POOL), psycopg waits on the hub: shared/green.py
settings = require(load_settings(), "database_url", "redis_url")  # else one line and exit 2, no traceback
require_current_models(settings)  # a retired or unknown MODEL / ALLOWED_MODELS: one line, exit 2
observability.install(settings)  # JSON logs with job and request ids; metrics on WORKER_METRICS_PORT
app = make_celery(settings, "parley-worker")
app.events_cls = "worker.task_events:TaskEvents"  # two task events a turn, not three (Flower)
app.set_default()
app.conf.worker_consumer = "worker.consumer:ResilientConsumer"  # survives a lost broker

log = logging.getLogger("parley.worker")
_services: Services | None = None
_services_lock = threading.Lock()
_sweeper: Sweeper | None = None
_watcher: EndWatcher | None = None
dispatcher = Dispatcher(app)


# A turn holds a connection only for its short transactions, never while the model
# answers, so a few are plenty for any number of threads; one per thread would pass
# PostgreSQL's max_connections (100 by default) once a pool grows past ~50 threads.
# No overflow: connections opened past the pool are closed again at check-in, and with
# many turns in flight that churn cost more (scenario 4: 20 + 10 against 20 + 0, 90.4 and
# 79.6 turns/s against 95.4 and 85.9) than a thread waiting its turn for a held one. 20 a
# process keeps `make run`'s two workers, its webhook worker (10: its 8 threads) and the
# API's two processes (20 each) at 90 of PostgreSQL's default 100.
DB_POOL_SIZE, DB_MAX_OVERFLOW = 20, 0
# The threads this process runs tasks on, as Celery was started with them (--concurrency:
# the webhook worker's 8, not the settings' WORKER_CONCURRENCY); None outside a worker.
_concurrency: int | None = None


@worker_init.connect
def _note_concurrency(sender, **_) -> None:
    global _concurrency
    _concurrency = sender.concurrency


def services() -> Services:
    global _services
    with _services_lock:
        if _services is None:
            _services = bootstrap(settings, with_model=True,
                                  pool_size=min((_concurrency or settings.worker_concurrency) + 2, DB_POOL_SIZE),
                                  max_overflow=DB_MAX_OVERFLOW)
        return _services


_leases: LeaseKeeper | None = None
_leases_lock = threading.Lock()


def leases() -> LeaseKeeper:
    """The process's lease keeper: one for all the turns it runs (worker/lease.py)."""
    global _leases
    with _leases_lock:
        if _leases is None:
            _leases = LeaseKeeper(TurnRecords(services()))
        return _leases


@worker_ready.connect
def _start_background(**_) -> None:
    global _sweeper, _watcher
    _watcher = EndWatcher(services()).start()
    _sweeper = Sweeper(services(), dispatcher)
    _sweeper.start()
    # What is loaded by now (modules, the app, the clients and pools) lives as long as the
    # process: frozen out of the collector's way, a full collection scans only what turns
    # hold. Unfrozen, each one walked the whole startup heap with the GIL held, stalling
    # every turn of the process (scenario 2's first round: 370-550 ms).
    gc.collect()
    gc.freeze()


@worker_shutdown.connect
def _stop_background(**_) -> None:
    for part in (_sweeper, _watcher):
        if part is not None:
            part.stop()


class ParleyTask(Task):
    """Every Parley task: acknowledged late and re-delivered if its worker is lost (set for
    the app in shared/tasks.py), retried as often as it asks, and given
    TASK_SOFT_TIME_LIMIT_SECONDS. Celery's thread pool enforces no time limit (prefork and
    gevent do), so what bounds a task there is its own: a turn's model calls (the limit
    must exceed them: shared/config.py), a webhook's WEBHOOK_TIMEOUT_SECONDS."""
    soft_time_limit = settings.task_soft_time_limit_seconds
    max_retries = None


@shared_task(name=REPLY_TASK, bind=True, base=ParleyTask)
def reply(self: Task, job_id: str) -> None:
    """Turn job `job_id` into one turn of its conversation."""
    keeper = leases()
    runtime = Runtime(dispatcher, worker=self.request.hostname, watcher=_watcher, records=keeper.records,
                      leases=keeper)
    outcome = run_turn(services(), job_id, runtime)
    if outcome.status == "busy":
        raise self.retry(countdown=backoff(outcome.retry_after, self.request.retries))


@shared_task(name=WEBHOOK_TASK, base=ParleyTask)
def deliver_webhook(job_id: str) -> None:
    """One delivery attempt of job `job_id`'s webhook; the next is scheduled if it fails."""
    deliver(services(), job_id, dispatcher)


@shared_task(name=FORK_LOG_TASK, base=ParleyTask)
def copy_fork(conversation_id: str) -> None:
    """Write fork `conversation_id`'s copied turns to its own log prefix."""
    copy_fork_log(services(), conversation_id)
