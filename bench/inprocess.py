"""The same turn without HTTP or the queue: the API's submit and the worker's
`run_turn`, called in this process against the stack's own services, with a
clock on each step so a turn's time can be split by where it goes."""
from __future__ import annotations

import dataclasses
import time
import uuid
from contextlib import ExitStack
from unittest import mock

import worker.pipeline as pipeline
from api.service import create_conversation, submit_message
from shared.bootstrap import Services
from shared.models import User
from shared.tasks import Dispatcher, make_celery

# Functions the pipeline calls by module-global name, and what each one costs.
PIPELINE_STEPS = {"claim": "claim (PostgreSQL)", "renew": "lease fence (PostgreSQL)",
                  "load_window": "window load (Redis)", "_commit_turn": "commit (PostgreSQL)",
                  "save_window": "window save (Redis)",
                  "announce_end": "announce end (next turn, webhook)"}


class StageClock:
    """Charges wall and CPU time to the innermost running step, so nested steps are not counted twice."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._stack: list[list] = []

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            self._stack.append([stage, time.perf_counter(), time.thread_time(), 0.0, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                name, started, cpu_started, inner, inner_cpu = self._stack.pop()
                spent, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
                self.totals[name] = self.totals.get(name, 0.0) + spent - inner
                self.cpu[name] = self.cpu.get(name, 0.0) + cpu - inner_cpu
                if self._stack:
                    self._stack[-1][3] += spent
                    self._stack[-1][4] += cpu
        return timed

    def take(self) -> tuple[dict[str, float], dict[str, float]]:
        taken = self.totals, self.cpu
        self.totals, self.cpu = {}, {}
        return taken


class _Timed:
    """A proxy whose listed methods are charged to a stage."""

    def __init__(self, target, clock: StageClock, methods: dict[str, str]):
        self._target = target
        for method, stage in methods.items():
            setattr(self, method, clock.wrap(stage, getattr(target, method)))

    def __getattr__(self, name):
        return getattr(self._target, name)


class InProcessTurns:
    def __init__(self, services: Services, user: User):
        self.clock = StageClock()
        self.user = user
        self.services = dataclasses.replace(
            services,
            store=_Timed(services.store, self.clock, {"put": "log put (storage)", "get": "log read (storage)"}),
            provider=_Timed(services.provider, self.clock, {"complete": "model call"}),
            events=_Timed(services.events, self.clock, {"add": "job events (Redis)"}))
        self.runtime = pipeline.Runtime(Dispatcher(make_celery(services.settings, "parley-bench")))
        self._submit = self.clock.wrap("submit (PostgreSQL)", submit_message)

    def new_conversation(self, name: str = "bench-inprocess") -> str:
        with self.services.sessions.begin() as session:
            return str(create_conversation(session, self.user, name, None).conversation_id)

    def turn(self, conversation_id: str, content: str) -> tuple[float, dict[str, float], dict[str, float]]:
        """One turn: its seconds, and its wall and CPU seconds by step (the rest is `other (Python)`)."""
        with ExitStack() as patches:
            for name, stage in PIPELINE_STEPS.items():
                if hasattr(pipeline, name):
                    timed = self.clock.wrap(stage, getattr(pipeline, name))
                    patches.enter_context(mock.patch.object(pipeline, name, timed))
            started, cpu_started = time.perf_counter(), time.thread_time()
            with self.services.sessions() as session:
                job, _ = self._submit(self.services, session, self.user, uuid.UUID(conversation_id), content, None)
            outcome = pipeline.run_turn(self.services, str(job.id), self.runtime)
            spent, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        if outcome.status != "done":
            raise RuntimeError(f"in-process turn {job.id}: {outcome}")
        walls, cpus = self.clock.take()
        walls["other (Python)"] = spent - sum(walls.values())
        cpus["other (Python)"] = cpu - sum(cpus.values())
        cpus["total"] = cpu
        return spent, walls, cpus
