"""The worker's Prometheus metrics, and the small HTTP server that exposes them.

A worker is one process (its tasks run in greenlets, or threads), so plain
prometheus_client metrics are correct here; no multiprocess mode. Each process
serves its own `/metrics` on WORKER_METRICS_PORT (0 = off): in compose every
container has its own network namespace, so they all use one port and
Prometheus finds them by DNS; `make run` gives worker N the port plus N-1.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("parley.metrics")

# Claude answers in seconds to minutes; jobs can wait behind a busy conversation.
_SLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

JOBS_FINISHED = Counter("parley_jobs_finished_total", "Jobs that reached a final state, by status.",
                        ["status"])
JOB_QUEUE_SECONDS = Histogram("parley_job_queue_seconds",
                              "From a job's submission to its first claim by a worker.",
                              buckets=_SLOW_BUCKETS)
MODEL_CALL_SECONDS = Histogram("parley_model_call_seconds",
                               "One model call, SDK retries included, by outcome (ok or an error type).",
                               ["outcome"], buckets=_SLOW_BUCKETS)
MODEL_TOKENS = Counter("parley_model_tokens_total", "Tokens the model reported, by direction (input, output).",
                       ["direction"])
PROMPT_CACHE_TOKENS = Counter("parley_prompt_cache_tokens_total",
                               "Prompt tokens read from or written to Claude's prompt cache, by model and kind "
                               "(read, write).", ["model", "kind"])
STOP_REASONS = Counter("parley_model_stop_reasons_total",
                       "Replies by the model's stop reason (as sent; \"none\" when missing) and what Parley made "
                       "of it (complete, truncated, refused, empty).", ["stop_reason", "outcome"])
RETRIES = Counter("parley_job_retries_total",
                  "Deliveries handed back to be tried later, by why (busy, transient, ...).", ["kind"])
TASKS = Counter("parley_worker_tasks_total", "Celery tasks run by this worker, by task and final state.",
                ["task", "state"])
TASKS_IN_PROGRESS = Gauge("parley_worker_tasks_in_progress", "Celery tasks running now, by task.", ["task"])
TASK_LAST_SUCCESS = Gauge("parley_worker_task_last_success_timestamp_seconds",
                          "When a task last ended without error (Unix time), by task.", ["task"])


# Called from the pipeline (worker/pipeline.py).

def job_finished(status: str, queue_seconds: float | None = None) -> None:
    """A job ended `succeeded`, `failed`, `cancelled` or `requires_action`. `queue_seconds`: from its
    creation to its first claim, when known."""
    JOBS_FINISHED.labels(status).inc()
    if queue_seconds is not None:
        JOB_QUEUE_SECONDS.observe(max(0.0, queue_seconds))


def model_call(seconds: float, input_tokens: int = 0, output_tokens: int = 0, outcome: str = "ok") -> None:
    """One call to the model; on failure pass the error's kind as `outcome`."""
    MODEL_CALL_SECONDS.labels(outcome).observe(max(0.0, seconds))
    if input_tokens:
        MODEL_TOKENS.labels("input").inc(input_tokens)
    if output_tokens:
        MODEL_TOKENS.labels("output").inc(output_tokens)


def prompt_cache(model: str, read: int, written: int) -> None:
    """One model call's prompt-cache tokens; reads cost a tenth of input or less, writes more than input."""
    if read:
        PROMPT_CACHE_TOKENS.labels(model, "read").inc(read)
    if written:
        PROMPT_CACHE_TOKENS.labels(model, "write").inc(written)


def stop_reason(reason: str | None, outcome: str) -> None:
    """One reply's stop reason; unknown ones are counted as they came (a new one shows up here first)."""
    STOP_REASONS.labels(reason or "none", outcome).inc()


def retry(kind: str) -> None:
    """A delivery that will be tried again later (e.g. `busy`, `transient`)."""
    RETRIES.labels(kind).inc()


# Called from Celery's task signals (worker/observability.py).

def task_started(task: str) -> None:
    TASKS_IN_PROGRESS.labels(task).inc()


def task_ended(task: str, state: str | None) -> None:
    state = (state or "unknown").lower()
    TASKS_IN_PROGRESS.labels(task).dec()
    TASKS.labels(task, state).inc()
    if state == "success":
        TASK_LAST_SUCCESS.labels(task).set(time.time())


def serve(port: int) -> bool:
    """Serve /metrics on `port` (all interfaces); 0 = off. A taken port is logged,
    not fatal: the worker's job is turns, not metrics."""
    if not port:
        return False
    try:
        start_http_server(port)
    except OSError as error:
        log.warning("worker metrics not served: port %s: %s", port, error)
        return False
    log.info("worker metrics on :%s/metrics", port)
    return True
