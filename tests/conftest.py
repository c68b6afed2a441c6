"""The real stack for integration tests: embedded PostgreSQL and Valkey, moto's S3
server over HTTP, the offline model, a Celery worker process, and the Flask app."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from alembic import command
from alembic.config import Config

from offline_model import OfflineModelServer
from shared.bootstrap import Services, bootstrap
from shared.config import ROOT, Settings
from shared.embedded import EmbeddedPostgres, EmbeddedValkey
from shared.users import get_or_create_user, issue_key

# Small enough that a few long messages overflow it.
TEST_CONTEXT_TOKENS = 300
# Models a conversation may choose besides the default (ALLOWED_MODELS).
ALLOWED_TEST_MODELS = ("claude-haiku-4-5", "claude-opus-4-8")
# Secrets are distinctive strings, so tests/security can prove no log or response carries them.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "aws-secret-7c41e9d05b",
           "AWS_DEFAULT_REGION": "us-east-1"}
ANTHROPIC_TEST_KEY = "sk-ant-test-secret-3f9a62c1d8"


@dataclass
class Stack:
    settings: Settings
    env: dict
    services: Services
    model: OfflineModelServer
    bucket: str
    workers: list[WorkerProcess] = field(default_factory=list)


DEFAULT_POOL = Settings.model_fields["worker_pool"].default


class WorkerProcess:
    """`celery worker` as a child process; ready when it says so on stderr."""

    def __init__(self, env: dict, name: str = "w1", concurrency: int = 4, queue: str = "parley.turns"):
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            # Turns on the pool `make run` starts (WORKER_POOL); webhooks always on threads.
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
             "--pool", env.get("WORKER_POOL", DEFAULT_POOL) if queue == "parley.turns" else "threads",
             "--concurrency", str(concurrency), "-Q", queue, "-n", f"{name}@%h", "-l", "INFO",
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        if not self.ready.wait(60):
            self.stop()
            raise RuntimeError("worker did not start:\n" + "".join(self.lines[-40:]))

    def _drain(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if " ready." in line:
                self.ready.set()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    base = tmp_path_factory.mktemp("stack")
    saved_env = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    postgres = EmbeddedPostgres(base / "pg", delete_on_stop=True)
    valkey = EmbeddedValkey(base / "valkey")
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    s3_url = "http://%s:%s" % s3.get_host_and_port()
    bucket = "parley-test"
    boto3.client("s3", endpoint_url=s3_url).create_bucket(Bucket=bucket)
    model = OfflineModelServer()
    model.start()

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "DATABASE_", "REDIS_", "STORAGE_"))}
    env.update(AWS_ENV, DATABASE_URL=postgres.url, REDIS_URL=valkey.url, STORAGE_URL=f"s3://{bucket}/logs",
               S3_ENDPOINT_URL=s3_url, ANTHROPIC_BASE_URL=model.url, ANTHROPIC_API_KEY=ANTHROPIC_TEST_KEY,
               MAX_CONTEXT_TOKENS=str(TEST_CONTEXT_TOKENS), ALLOWED_MODELS=",".join(ALLOWED_TEST_MODELS),
               MODEL_MAX_RETRIES="2", CHAT_WAIT_SECONDS="20",
               VAR_DIR=str(base / "var"), PYTHONUNBUFFERED="1", SWEEP_INTERVAL_SECONDS="0.5",
               QUEUED_GRACE_SECONDS="1", JOB_LEASE_SECONDS="5", SSE_PING_SECONDS="0.5",
               WEBHOOK_ALLOW_PRIVATE_ADDRESSES="true", WEBHOOK_BACKOFF_SECONDS="0.2",
               WEBHOOK_RETRY_WINDOW_SECONDS="3", WEBHOOK_TIMEOUT_SECONDS="2", MODEL_RETRY_BASE_SECONDS="0.05",
               MAX_TOOL_ROUNDS="2")
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes.update(url=settings.sqlalchemy_url, configure_logger=False)
    command.upgrade(config, "head")
    services = bootstrap(settings)
    worker = WorkerProcess(env)
    webhooks = WorkerProcess(env, name="webhooks", queue="parley.webhooks")
    try:
        yield Stack(settings, env, services, model, bucket, workers=[worker, webhooks])
    finally:
        webhooks.stop()
        worker.stop()
        services.close()
        model.stop()
        s3.stop()
        valkey.stop()
        postgres.stop()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def app(stack):
    from api import create_app

    return create_app(stack.settings, stack.services)


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def make_user(stack):
    """A new user with a key; returns request headers carrying that key."""
    def make(name: str | None = None) -> dict:
        with stack.services.sessions.begin() as session:
            key = issue_key(session, get_or_create_user(session, name or f"user-{uuid.uuid4().hex[:8]}"))
        return {"Authorization": f"Bearer {key}"}
    return make


@pytest.fixture()
def alice(make_user):
    return make_user()


@pytest.fixture()
def bob(make_user):
    return make_user()
