"""A whole Parley stack that a test may break: its own embedded PostgreSQL and
Valkey, moto's S3 server behind a switchable proxy, the offline model, Celery
worker processes, and the Flask app in this process (see processes.py for how each
service goes away and comes back). Also used by `bench/soak.py`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import requests

from offline_model import OfflineModelServer
from shared.bootstrap import Services, bootstrap
from shared.config import ROOT, Settings
from tests.faults.processes import RestartablePostgres, RestartableValkey, SwitchableProxy, WorkerProcess

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
        from moto.server import ThreadedMotoServer

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        moto_address = self.moto.get_host_and_port()
        boto3.client("s3", endpoint_url="http://%s:%s" % moto_address).create_bucket(Bucket=BUCKET)
        self.s3 = SwitchableProxy(moto_address)
        self.model = OfflineModelServer().start()

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("ANTHROPIC_", "DATABASE_", "REDIS_", "STORAGE_", "BROKER_"))}
        env.update(AWS_ENV, DATABASE_URL=self.postgres.url, REDIS_URL=self.valkey.url,
                   STORAGE_URL=f"s3://{BUCKET}/logs", S3_ENDPOINT_URL=self.s3.url,
                   ANTHROPIC_BASE_URL=self.model.url, ANTHROPIC_API_KEY="sk-ant-faults",
                   MAX_CONTEXT_TOKENS=str(CONTEXT_TOKENS), MODEL_MAX_RETRIES="0", VAR_DIR=str(base / "var"),
                   PYTHONUNBUFFERED="1", SWEEP_INTERVAL_SECONDS="0.5", QUEUED_GRACE_SECONDS="1",
                   JOB_LEASE_SECONDS="5", RATE_LIMIT_PER_MINUTE="100000", MAX_JOBS_IN_FLIGHT="500",
                   WORKER_CONCURRENCY="4", LOG_LEVEL="INFO")
        self.env = env
        self.settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()
                                                    if k.lower() in Settings.model_fields})
        self._migrate()
        self.services: Services = bootstrap(self.settings)
        self.workers: list[WorkerProcess] = []
        self._app = None
        self._worker_services: Services | None = None

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config(str(ROOT / "alembic.ini"))
        config.attributes.update(url=self.settings.sqlalchemy_url, configure_logger=False)
        command.upgrade(config, "head")

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
        started = [WorkerProcess(self.env, f"w{uuid.uuid4().hex[:6]}", concurrency, self.base)
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
        self.s3.stop()
        self.moto.stop()
        self.valkey.close()
        self.postgres.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def text_of(content) -> str:
    """A Messages API content: a string, or text blocks (e.g. with cache_control)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if block.get("type") == "text")


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


class RecordingDispatcher:
    """Stands in for Celery when the pipeline runs in the test: remembers what it would send."""

    def __init__(self):
        self.turns, self.webhooks = [], []

    def turn(self, job_id) -> None:
        self.turns.append(str(job_id))

    def webhook(self, job_id, countdown=None) -> None:
        self.webhooks.append(str(job_id))


def assert_consistent(stack: FaultStack) -> None:
    """The consistency checker (worker/check.py) finds nothing."""
    from worker.check import check

    report = check(stack.services)
    assert not report.findings, "\n".join(report.lines())
