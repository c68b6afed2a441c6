"""The real stack for the benchmarks, started the way `make run` starts it, in a temp folder.

Embedded PostgreSQL and Valkey, a local folder as the log store, the offline model
and gunicorn as child processes, and celery workers that each scenario (re)starts
with the pool it needs. The bench process also gets its own `Services`, so the
in-process pipeline runs against the very same database, Redis and folder.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2
import psutil
from alembic import command
from alembic.config import Config

from shared.bootstrap import Services, bootstrap
from shared.config import ROOT, Settings
from shared.embedded import EmbeddedPostgres, EmbeddedValkey
from shared.models import User
from shared.users import get_or_create_user, issue_key

# The limiter and the in-flight cap stay on (their cost is part of every request)
# but are set so a benchmark's own load never trips them.
BENCH_ENV = {"RATE_LIMIT_PER_MINUTE": "1000000", "MAX_JOBS_IN_FLIGHT": "100000", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_UUID_OR_NUMBER = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+")


class Child:
    """A child process logging to a file; up when `ready_line` shows on stderr, or its URL answers."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path, ready_line: str | None = None):
        self.name, self.ready_line, self.ready = name, ready_line, threading.Event()
        self.log_path = logs / f"{name}.log"
        self._log = open(self.log_path, "a", buffering=1)
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.PIPE,
                                        text=True, start_new_session=True)
        threading.Thread(target=self._drain, name=f"drain-{name}", daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stderr:
            self._log.write(line)
            if self.ready_line and self.ready_line in line:
                self.ready.set()

    def wait_ready(self, url: str | None = None, timeout: float = 90) -> "Child":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}); see {self.log_path}")
            if url is None and self.ready.wait(0.1):
                return self
            if url is not None:
                try:
                    if httpx2.get(url, timeout=1).status_code == 200:
                        return self
                except httpx2.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def problems(self) -> Counter:
        """Warnings and errors logged since the last call, by message with ids and numbers blanked."""
        found = Counter()
        with open(self.log_path, errors="replace") as log:
            log.seek(getattr(self, "_read_to", 0))
            for line in log:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("level") in ("warning", "error", "critical"):
                    found[f"{self.name}: " + _UUID_OR_NUMBER.sub("…", str(record.get("event", "")))[:160]] += 1
            self._read_to = log.tell()
        return found

    def tree(self) -> list[psutil.Process]:
        """This process and its children (gunicorn's workers)."""
        try:
            parent = psutil.Process(self.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def worker_argv(app: str, queue: str, name: str, concurrency: int, pool: str) -> list[str]:
    """A Celery worker as `make run` starts one (without gossip and mingle: bench workers
    need not know each other, and start faster)."""
    return [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", pool, "--concurrency", str(concurrency),
            "-Q", queue, "-n", name, "-l", "INFO", "--without-gossip", "--without-mingle"]


class BenchStack:
    # What gunicorn and celery load; an experiment may point these at a patched module.
    api_app, worker_app = "api.wsgi:app", "worker.celery_app"

    def __init__(self, base: Path, api_processes: int = 2, api_threads: int = 400, overrides: dict | None = None):
        self.base, self.logs = base, base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api_processes, self.api_threads = api_processes, api_threads
        self.storage = base / "storage"
        self.postgres = EmbeddedPostgres(base / "postgres", delete_on_stop=True)
        self.valkey = EmbeddedValkey(base / "valkey")
        self.model_url = f"http://127.0.0.1:{free_port()}"
        self.api_url = f"http://127.0.0.1:{free_port()}"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("ANTHROPIC_", "DATABASE_", "REDIS_", "STORAGE_", "S3_", "API_", "WORKER"))}
        self.env.update(BENCH_ENV, DATABASE_URL=self.postgres.url, REDIS_URL=self.valkey.url,
                        STORAGE_URL=str(self.storage), ANTHROPIC_BASE_URL=self.model_url,
                        VAR_DIR=str(base / "var"), API_THREADS=str(api_threads), API_PROCESSES=str(api_processes))
        self.env.update({name: str(value) for name, value in (overrides or {}).items() if value is not None})
        self.settings = Settings(_env_file=None, **{k.lower(): v for k, v in self.env.items()
                                                    if k.lower() in Settings.model_fields})
        self.workers: list[Child] = []
        self.worker_config = (0, 0, "")
        self.model = self.api = self.webhooks = self.flower = None
        self.services: Services | None = None
        self.profile = False  # py-spy the throughput scenario

    def start(self) -> "BenchStack":
        python = sys.executable
        port = self.model_url.rsplit(":", 1)[1]
        self.model = Child("model", [python, "-m", "offline_model", "--port", port], self.env, self.logs)
        self.model.wait_ready(self.model_url + "/healthz")
        config = Config(str(ROOT / "alembic.ini"))
        config.attributes.update(url=self.settings.sqlalchemy_url, configure_logger=False)
        command.upgrade(config, "head")
        self.services = bootstrap(self.settings, with_model=True, pool_size=20)
        with self.services.sessions.begin() as session:
            self.user = get_or_create_user(session, "bench")
            self.key = issue_key(session, self.user)
        self.api = Child("api", [python, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "-b",
                                 self.api_url.removeprefix("http://"), self.api_app], self.env, self.logs)
        self.api.wait_ready(self.api_url + "/healthz")
        # `make run` also starts the webhook worker and Flower: their CPU is part of every turn
        # (Flower reads every task event the workers send).
        self.webhooks = Child("webhooks", worker_argv(self.worker_app, "parley.webhooks", "webhooks@%h", 8,
                                                      self.settings.worker_pool),
                              {**self.env, "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"}, self.logs,
                              ready_line=" ready.")
        self.flower = Child("flower", [python, "-m", "celery", "-A", self.worker_app, "flower",
                                       "--address=127.0.0.1", f"--port={free_port()}"],
                            {**self.env, "FLOWER_BASIC_AUTH": "bench:bench"}, self.logs)
        self.webhooks.wait_ready()
        return self

    def new_user(self, name: str) -> tuple[User, str]:
        with self.services.sessions.begin() as session:
            user = get_or_create_user(session, name)
            return user, issue_key(session, user)

    def use_workers(self, processes: int, concurrency: int | None = None, pool: str | None = None) -> list[Child]:
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
            self.workers.append(Child(f"worker{n}-{pool}{concurrency}",
                                      worker_argv(self.worker_app, "parley.turns", f"bench{n}@%h", concurrency, pool),
                                      env, self.logs, ready_line=" ready."))
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
