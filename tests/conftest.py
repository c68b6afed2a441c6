"""The real stack for integration tests: embedded PostgreSQL and Valkey, moto's S3
server over HTTP, the offline model, a Celery worker process, and the Flask app;
started with the stack builder in devstack/ (services, environment, processes)."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

import pytest

from devstack.environment import migrate, settings_for, stack_env
from devstack.processes import WEBHOOK_CONCURRENCY, WEBHOOKS, WorkerProcess
from devstack.services import S3Server
from offline_model import OfflineModelServer
from shared.bootstrap import Services, bootstrap
from shared.config import Settings
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


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("stack")
    saved_env = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    postgres = EmbeddedPostgres(base / "pg", delete_on_stop=True)
    valkey = EmbeddedValkey(base / "valkey")
    bucket = "parley-test"
    s3 = S3Server(bucket)
    model = OfflineModelServer()
    model.start()

    env = stack_env(**AWS_ENV, DATABASE_URL=postgres.url, REDIS_URL=valkey.url, STORAGE_URL=f"s3://{bucket}/logs",
                    S3_ENDPOINT_URL=s3.url, ANTHROPIC_BASE_URL=model.url, ANTHROPIC_API_KEY=ANTHROPIC_TEST_KEY,
                    MAX_CONTEXT_TOKENS=str(TEST_CONTEXT_TOKENS), ALLOWED_MODELS=",".join(ALLOWED_TEST_MODELS),
                    MODEL_MAX_RETRIES="2", CHAT_WAIT_SECONDS="20",
                    VAR_DIR=str(base / "var"), PYTHONUNBUFFERED="1", SWEEP_INTERVAL_SECONDS="0.5",
                    QUEUED_GRACE_SECONDS="1", JOB_LEASE_SECONDS="5", SSE_PING_SECONDS="0.5",
                    WEBHOOK_ALLOW_PRIVATE_ADDRESSES="true", WEBHOOK_BACKOFF_SECONDS="0.2",
                    WEBHOOK_RETRY_WINDOW_SECONDS="3", WEBHOOK_TIMEOUT_SECONDS="2", MODEL_RETRY_BASE_SECONDS="0.05",
                    MAX_TOOL_ROUNDS="2")
    settings = settings_for(env)
    migrate(settings.sqlalchemy_url)
    services = bootstrap(settings)
    worker = WorkerProcess(env, "w1").wait_ready()
    webhooks = WorkerProcess(env, "webhooks", WEBHOOK_CONCURRENCY, queue=WEBHOOKS).wait_ready()
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
