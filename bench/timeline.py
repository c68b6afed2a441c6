"""Where a turn's time went, from the job's own timestamps and the client's clock.

PostgreSQL's now() is the start of the transaction that wrote a timestamp and
reads the same system clock as time.time() here (one machine), so:

  sent → created_at        the API before its submit transaction (HTTP, rate limit, key check)
  created_at → started_at  submit transaction, task send, broker, worker pick-up, until the claim
  started_at → finished_at the worker: window, model, log put, until the commit transaction
  finished_at → received   commit, window save, publish, the long-poll waking, the response
"""
from __future__ import annotations

import statistics
from datetime import datetime

PHASES = ("api before submit", "submit to claim", "claim to commit", "commit to client")


def at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def phases(job: dict, sent: float, received: float) -> list[float]:
    """The four spans of one turn, in seconds; `sent`/`received` are time.time() values."""
    created, started, finished = at(job["created_at"]), at(job["started_at"]), at(job["finished_at"])
    return [created - sent, started - created, finished - started, received - finished]


def medians(rows: list[list[float]]) -> dict[str, float]:
    """Median of each span, in milliseconds."""
    return {name: round(statistics.median(row[i] for row in rows) * 1000, 2) for i, name in enumerate(PHASES)}


def stage_medians(rows: list[dict[str, float]]) -> dict[str, float]:
    names = sorted({name for row in rows for name in row})
    return {name: round(statistics.median(row.get(name, 0.0) for row in rows) * 1000, 2) for name in names}


def describe(spans: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in spans.items()) + " ms"
