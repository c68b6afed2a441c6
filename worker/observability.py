"""Logs and metrics for a worker process, wired through Celery's signals.

- Celery leaves logging to `shared.logs` (JSON lines on stderr), because a
  `setup_logging` receiver is connected.
- Each task's lines carry its `job_id` and the API's `request_id` (sent as a
  message header by the API), bound in contextvars for the task's thread.
- Task counts feed `worker.metrics`; the metrics server starts once the worker is ready.
"""
from __future__ import annotations

import logging

from celery import Task
from celery.signals import setup_logging, task_postrun, task_prerun, worker_ready

from shared.config import Settings
from shared.logs import bind_context, clear_context, configure_logging
from shared.tasks import REQUEST_ID_HEADER
from worker import metrics

_settings: Settings | None = None


# Celery logs a task twice at INFO, when received and when it ends; the end line says it
# all (the task, its job and request ids, how long it ran), so one line a turn is enough
# (LOG_LEVEL=DEBUG keeps both).
QUIET = {"celery.worker.strategy": logging.WARNING}


def install(settings: Settings) -> None:
    global _settings
    _settings = settings
    configure_logging(settings.log_level, settings.log_format, settings.process_name)
    if settings.log_level != "DEBUG":
        for name, level in QUIET.items():
            logging.getLogger(name).setLevel(level)
    for signal, receiver in ((setup_logging, _keep_our_logging), (task_prerun, _task_started),
                             (task_postrun, _task_ended), (worker_ready, _serve_metrics)):
        signal.connect(receiver, weak=False, dispatch_uid=f"parley.{receiver.__name__}")


def request_id_of(task: Task) -> str | None:
    """The API's request id, from the message headers (Celery exposes custom
    headers as attributes of the task's request)."""
    request = task.request
    value = getattr(request, REQUEST_ID_HEADER, None) or (getattr(request, "headers", None) or {}).get(
        REQUEST_ID_HEADER)
    return str(value) if value else None


def _keep_our_logging(**_) -> None:
    configure_logging(_settings.log_level, _settings.log_format, _settings.process_name)


def _task_started(task: Task | None = None, args: tuple | list | None = None, **_) -> None:
    clear_context()
    if task is None:
        return
    # Parley's tasks all take a job id, and only that.
    bind_context(task=task.name, job_id=args[0] if args else None, request_id=request_id_of(task))
    metrics.task_started(task.name)


def _task_ended(task: Task | None = None, state: str | None = None, **_) -> None:
    if task is not None:
        metrics.task_ended(task.name, state)
    clear_context()


def _serve_metrics(**_) -> None:
    metrics.serve(_settings.worker_metrics_port)
