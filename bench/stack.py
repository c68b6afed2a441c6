"""The real stack for the benchmarks, started the way `make run` starts it, in a temp folder.

Embedded PostgreSQL and Valkey, a local folder as the log store, the offline model
and gunicorn as child processes, and celery workers that each scenario (re)starts
with the pool it needs. The bench process also gets its own `Services`, so the
in-process pipeline runs against the very same database, Redis and folder. The
services, environment, migration and processes are the stack builder's (devstack/).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx2
import psutil

from devstack.environment import SERVICE_VARS, migrate, settings_for, stack_env
from devstack.ports import free_port
from devstack.processes import (API_APP, DEFAULT_WORKERS, WEBHOOK_CONCURRENCY, WEBHOOKS, WORKER_APP, Child,
                                WorkerProcess, api_argv, flower_argv, model_argv)
from shared.bootstrap import Services, bootstrap
from shared.embedded import EmbeddedPostgres, EmbeddedValkey
from shared.models import User
from shared.users import get_or_create_user, issue_key

# The limiter and the in-flight cap stay on (their cost is part of every request)
# but are set so a benchmark's own load never trips them.
BENCH_ENV = {"RATE_LIMIT_PER_MINUTE": "1000000", "MAX_JOBS_IN_FLIGHT": "100000", "PYTHONUNBUFFERED": "1"}


__all__ = ["BenchStack", "Child", "free_port"]  # scenarios start extra children of their own


class BenchStack:
    # What gunicorn and celery load; an experiment may point these at a patched module.
    api_app, worker_app = API_APP, WORKER_APP

    def __init__(self, base: Path, api_processes: int = 2, api_threads: int = 400, overrides: dict | None = None):
        self.base, self.logs = base, base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api_processes, self.api_threads = api_processes, api_threads
        self.storage = base / "storage"
        self.postgres = EmbeddedPostgres(base / "postgres", delete_on_stop=True)
        self.valkey = EmbeddedValkey(base / "valkey")
        self.model_url = f"http://127.0.0.1:{free_port()}"
        self.api_url = f"http://127.0.0.1:{free_port()}"
        self.env = stack_env((*SERVICE_VARS, "S3_", "API_", "WORKER"), **BENCH_ENV, DATABASE_URL=self.postgres.url,
                             REDIS_URL=self.valkey.url, STORAGE_URL=str(self.storage),
                             ANTHROPIC_BASE_URL=self.model_url, VAR_DIR=str(base / "var"),
                             API_THREADS=str(api_threads), API_PROCESSES=str(api_processes))
        self.env.update({name: str(value) for name, value in (overrides or {}).items() if value is not None})
        self.settings = settings_for(self.env)
        self.workers: list[WorkerProcess] = []
        self.worker_config = (0, 0, "")
        self.model = self.api = self.webhooks = self.flower = None
        self.services: Services | None = None
        self.profile = False  # py-spy the throughput scenario
        self.capacity_workers = DEFAULT_WORKERS  # scenario 2's worker processes, as `make run` starts them

    def start(self) -> "BenchStack":
        port = int(self.model_url.rsplit(":", 1)[1])
        self.model = Child("model", model_argv(port), self.env, self.logs)
        self.model.wait_ready(self.model_url + "/healthz")
        migrate(self.settings.sqlalchemy_url)
        self.services = bootstrap(self.settings, with_model=True, pool_size=20)
        with self.services.sessions.begin() as session:
            self.user = get_or_create_user(session, "bench")
            self.key = issue_key(session, self.user)
        self.api = Child("api", api_argv(self.api_url.removeprefix("http://"), self.api_app), self.env, self.logs)
        self.api.wait_ready(self.api_url + "/healthz")
        # `make run` also starts the webhook worker and Flower: their CPU is part of every turn
        # (Flower reads every task event the workers send).
        self.webhooks = WorkerProcess({**self.env, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"}, "webhooks",
                                      WEBHOOK_CONCURRENCY, WEBHOOKS, self.logs, app=self.worker_app)
        self.flower = Child("flower", flower_argv(free_port()),
                            {**self.env, "FLOWER_BASIC_AUTH": "bench:bench"}, self.logs)
        self.webhooks.wait_ready()
        return self

    def new_user(self, name: str) -> tuple[User, str]:
        with self.services.sessions.begin() as session:
            user = get_or_create_user(session, name)
            return user, issue_key(session, user)

    def use_workers(self, processes: int, concurrency: int | None = None,
                    pool: str | None = None) -> list[WorkerProcess]:
        """Celery turn workers with this pool (by default, the settings' as `make run` starts them);
        restarted only if it differs from the running one."""
        concurrency = concurrency or self.settings.worker_concurrency
        pool = pool or self.settings.worker_pool
        config = (processes, concurrency, pool)
        if self.worker_config == config and all(w.process.poll() is None for w in self.workers):
            return self.workers
        self.stop_workers()
        env = {**self.env, "WORKER_CONCURRENCY": str(concurrency), "WORKER_POOL": pool}
        for n in range(1, processes + 1):
            self.workers.append(WorkerProcess(env, f"bench{n}", concurrency, logs=self.logs, pool=pool,
                                              app=self.worker_app, label=f"worker{n}-{pool}{concurrency}"))
        for worker in self.workers:
            worker.wait_ready()
        self.worker_config = config
        return self.workers

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers, self.worker_config = [], (0, 0, "")

    def model_control(self, delay_ms: int = 0, stream_delay_ms: int = 0, chunk_chars: int = 8) -> None:
        httpx2.post(self.model_url + "/_control", json={"delay_ms": delay_ms, "stream_delay_ms": stream_delay_ms,
                                                         "chunk_chars": chunk_chars}).raise_for_status()

    def problems(self) -> Counter:
        """Warnings and errors the API and workers logged since the last call."""
        found = Counter()
        for child in (self.api, *self.workers, self.webhooks):
            if child is not None:
                found.update(child.problems())
        return found

    def roles(self) -> dict[str, list[psutil.Process]]:
        """Every process of the stack by what it is, for CPU accounting."""
        def tree(pid: int | None) -> list[psutil.Process]:
            if pid is None:
                return []
            parent = psutil.Process(pid)
            return [parent, *parent.children(recursive=True)]
        return {
            "api": self.api.tree(),
            "worker": [p for w in self.workers for p in w.tree()],
            "webhook worker": self.webhooks.tree() if self.webhooks else [],
            "flower": self.flower.tree() if self.flower else [],
            "postgres": tree(self.postgres.server.get_pid()),
            "redis": tree(self.valkey.server._process.pid),
            "model": self.model.tree(),
            "bench": [psutil.Process()],
        }

    def stop(self) -> None:
        self.stop_workers()
        for child in (self.flower, self.webhooks, self.api, self.model):
            if child is not None:
                child.stop()
        if self.services is not None:
            self.services.close()
        self.valkey.stop()
        self.postgres.stop()
