"""A whole Parley stack that a test or the soak may break: its own embedded PostgreSQL
and Valkey, moto's S3 server behind a switchable proxy, the offline model, Celery
worker processes, and the Flask app in this process (see services.py for how each
service goes away and comes back). Used by tests/faults and `bench/soak.py`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import requests

from devstack.environment import SERVICE_VARS, migrate, settings_for, stack_env
from devstack.processes import WorkerProcess
from devstack.services import RestartablePostgres, RestartableValkey, S3Server
from offline_model import OfflineModelServer
from shared.bootstrap import Services, bootstrap

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "aws-secret-faults",
           "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "parley-faults"
# Big enough that a 50-turn conversation fits whole, so every call sees every earlier reply.
CONTEXT_TOKENS = 4000


class FaultStack:
    """The services, the model, the workers and the API, with data under `base`."""

    def __init__(self, base: Path):
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self._saved_env = {name: os.environ.get(name) for name in AWS_ENV}
        os.environ.update(AWS_ENV)  # for boto3 in this process (the API's log store, the bucket)
        self.postgres = RestartablePostgres(base / "pg")
        self.valkey = RestartableValkey(base / "valkey")
        self.storage = S3Server(BUCKET, switchable=True)
        self.s3 = self.storage.proxy
        self.model = OfflineModelServer().start()

        self.env = stack_env(
            (*SERVICE_VARS, "BROKER_"), **AWS_ENV, DATABASE_URL=self.postgres.url, REDIS_URL=self.valkey.url,
            STORAGE_URL=f"s3://{BUCKET}/logs", S3_ENDPOINT_URL=self.s3.url,
            ANTHROPIC_BASE_URL=self.model.url, ANTHROPIC_API_KEY="sk-ant-faults",
            MAX_CONTEXT_TOKENS=str(CONTEXT_TOKENS), MODEL_MAX_RETRIES="0", VAR_DIR=str(base / "var"),
            PYTHONUNBUFFERED="1", SWEEP_INTERVAL_SECONDS="0.5", QUEUED_GRACE_SECONDS="1",
            JOB_LEASE_SECONDS="5", RATE_LIMIT_PER_MINUTE="100000", MAX_JOBS_IN_FLIGHT="500",
            WORKER_CONCURRENCY="4", LOG_LEVEL="INFO")
        self.settings = settings_for(self.env)
        migrate(self.settings.sqlalchemy_url)
        self.services: Services = bootstrap(self.settings)
        self.workers: list[WorkerProcess] = []
        self._app = None
        self._worker_services: Services | None = None

    # -- the API, in this process -----------------------------------------------

    @property
    def app(self):
        if self._app is None:
            from api import create_app

            self._app = create_app(self.settings, self.services)
        return self._app

    def new_user(self) -> dict:
        from shared.users import get_or_create_user, issue_key

        with self.services.sessions.begin() as session:
            key = issue_key(session, get_or_create_user(session, f"fault-{uuid.uuid4().hex[:8]}"))
        return {"Authorization": f"Bearer {key}"}

    # -- workers -------------------------------------------------------------------

    def worker_services(self) -> Services:
        """Services as a worker builds them (with the model), for running the pipeline here."""
        if self._worker_services is None:
            self._worker_services = bootstrap(self.settings, with_model=True)
        return self._worker_services

    def start_workers(self, count: int = 1, concurrency: int = 4) -> list[WorkerProcess]:
        started = [WorkerProcess(self.env, f"w{uuid.uuid4().hex[:6]}", concurrency, logs=self.base)
                   for _ in range(count)]
        self.workers.extend(started)
        return [worker.wait_ready() for worker in started]

    def use_workers(self, count: int) -> list[WorkerProcess]:
        """At least `count` live workers, reusing those earlier tests left running."""
        self.workers = [worker for worker in self.workers if worker.process.poll() is None]
        if len(self.workers) < count:
            self.start_workers(count - len(self.workers))
        return self.workers

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.workers.clear()

    # -- the model -------------------------------------------------------------

    def model_control(self, **settings: int) -> None:
        requests.post(f"{self.model.url}/_control", json=settings, timeout=5).raise_for_status()

    def model_requests(self) -> list[dict]:
        return requests.get(f"{self.model.url}/_requests", timeout=5).json()["requests"]

    # -- faults ----------------------------------------------------------------

    def restore(self) -> None:
        """Bring every service back, whatever a test left down."""
        if not self.postgres.running:
            self.postgres.start()
        if not self.valkey.server.is_running():
            self.valkey.start()
        if self.s3._listener is None:
            self.s3.start()
        self.model_control(delay_ms=0, stream_delay_ms=0)

    def close(self) -> None:
        self.stop_workers()
        self.services.close()
        if self._worker_services is not None:
            self._worker_services.close()
        self.model.stop()
        self.storage.stop()
        self.valkey.close()
        self.postgres.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll cross-process state: `predicate()`'s first truthy value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
