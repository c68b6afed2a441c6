"""Flower as `make run` and docker compose start it: `python -m worker.flower [options]` is
`celery -A worker.celery_app flower [options]`, with what it loads at start frozen out of
the garbage collector's way.

Flower keeps the events of its last --max_tasks tasks in memory, so its long-lived heap
grows with every turn and Python's full collections come often. Each one also walked
the modules of Flower, Tornado, Celery and the app, a few hundred thousand objects that
are never garbage, with the GIL held: 130-160 ms at start, 530-620 ms (wall) inside
scenario 2's rounds. Frozen (gc.freeze), a collection scans only the task state.

That state is kept smaller too: Flower's own default holds 100,000 tasks, ~3.7 KB each
(365 MB, and a full collection of ~950 ms at the cap); Parley's default is 10,000, Celery's
own for its event state (54 MB, ~215 ms), a couple of minutes at full load and hours at a
usual one. Every job stays in PostgreSQL (GET /v1/jobs/<id>). FLOWER_MAX_TASKS sets it
(shared/config.py), and Flower reads it as it reads any FLOWER_<option>.
"""
from __future__ import annotations

import gc
import os
import sys
from importlib import import_module

from celery.bin.celery import main as celery

# The app and all it imports, loaded before the freeze (Celery finds it loaded); its
# settings are checked there (a bad FLOWER_MAX_TASKS is one line and exit status 2).
from worker import celery_app


def main(argv: list[str]) -> int:
    # As validated (Flower parses it again).
    os.environ["FLOWER_MAX_TASKS"] = str(celery_app.settings.flower_max_tasks)
    import_module("flower.command")  # Flower and Tornado, likewise
    gc.collect()
    gc.freeze()
    sys.argv = ["celery", "-A", celery_app.__name__, "flower", *argv]
    return celery()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
