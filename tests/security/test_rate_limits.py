"""Requests per minute per key (the `limits` library on the stack's Redis), and the daily
model-token quota per user."""
from __future__ import annotations

import dataclasses
import socket
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from api import create_app
from api.errors import refusal_status
from shared.cache import make_redis
from shared.quotas import TokenQuota, enforce_token_quota
from shared.refusals import TooMany
from tests.security.support import assert_envelope, bearer, new_key

LIMIT = 3


def app_with(stack, **settings):
    return create_app(stack.settings.model_copy(update=settings), stack.services)


def dead_redis_url() -> str:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


@pytest.fixture(scope="module")
def limited(stack):
    return app_with(stack, rate_limit_per_minute=LIMIT).test_client()


def test_a_key_over_its_limit_gets_429_with_retry_after(stack, limited):
    headers = bearer(new_key(stack))
    for _ in range(LIMIT):
        assert limited.get("/v1/conversations", headers=headers).status_code == 200
    response = limited.get("/v1/conversations", headers=headers)
    assert_envelope(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Another key, even of the same user, has its own count.
    assert limited.get("/v1/conversations", headers=bearer(new_key(stack))).status_code == 200


def test_the_count_is_shared_by_every_endpoint(stack, limited):
    headers = bearer(new_key(stack))
    assert limited.post("/v1/conversations", json={}, headers=headers).status_code == 201
    assert limited.get(f"/v1/jobs/{uuid.uuid4()}", headers=headers).status_code == 404
    assert limited.get("/v1/conversations", headers=headers).status_code == 200
    assert_envelope(limited.post("/new_chat", headers=headers), 429, "rate_limited")


def test_health_and_the_document_are_exempt(stack, limited):
    headers = bearer(new_key(stack))
    for _ in range(LIMIT + 2):
        for path in ("/healthz", "/readyz", "/openapi.json"):
            assert limited.get(path, headers=headers).status_code == 200, path
    assert limited.get("/v1/conversations", headers=headers).status_code == 200


def test_requests_without_a_key_count_against_their_address(limited):
    address = {"REMOTE_ADDR": "192.0.2.77"}  # a documentation address, never reached
    for _ in range(LIMIT):
        assert_envelope(limited.get("/v1/conversations", environ_base=address), 401)
    assert_envelope(limited.get("/v1/conversations", environ_base=address), 429, "rate_limited")
    assert_envelope(limited.get("/v1/conversations", environ_base={"REMOTE_ADDR": "192.0.2.78"}), 401)


def test_429_is_documented_with_retry_after(client):
    spec = client.get("/openapi.json").get_json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                assert "429" in operation["responses"], f"{method.upper()} {path}"


def test_redis_down_falls_back_to_counting_in_memory(stack):
    # The limiter's Redis is gone; PostgreSQL still answers the request itself.
    client = app_with(stack, rate_limit_per_minute=LIMIT, redis_url=dead_redis_url()).test_client()
    headers = bearer(new_key(stack))
    for _ in range(LIMIT):
        assert client.get("/v1/conversations", headers=headers).status_code == 200
    assert_envelope(client.get("/v1/conversations", headers=headers), 429, "rate_limited")


def test_zero_turns_the_limit_off(stack):
    app = app_with(stack, rate_limit_per_minute=0)
    assert "limiter" not in app.extensions
    headers = bearer(new_key(stack))
    for _ in range(LIMIT + 2):
        assert app.test_client().get("/v1/conversations", headers=headers).status_code == 200


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_token_quota_counts_per_user_and_utc_day(stack):
    clock = Clock(datetime(2026, 3, 1, 23, 59, 30, tzinfo=timezone.utc))
    quota = TokenQuota(stack.services.redis, 100, clock=clock)
    user, other = uuid.uuid4(), uuid.uuid4()
    assert quota.record(user, 60) == 60 and quota.check(user) is None
    assert quota.record(user, 40) == 100
    assert quota.check(user) == 30  # seconds to 00:00 UTC
    assert quota.check(other) is None and quota.used(other) == 0
    ttl = stack.services.redis.ttl(f"parley:quota:tokens:{user}:20260301")
    assert 30 < ttl <= 30 + 3600, "the day's counter expires after the day"
    clock.now += timedelta(seconds=31)
    assert quota.check(user) is None and quota.used(user) == 0
    assert TokenQuota(stack.services.redis, 0, clock=clock).check(user) is None  # 0: unlimited


def test_enforce_token_quota(stack):
    services = dataclasses.replace(stack.services, settings=stack.settings.model_copy(
        update={"model_tokens_per_day": 10}))
    user = type("User", (), {"id": uuid.uuid4()})()
    enforce_token_quota(services, user)
    TokenQuota(services.redis, 10).record(user.id, 10)
    with pytest.raises(TooMany) as raised:
        enforce_token_quota(services, user)
    assert refusal_status(raised.value) == 429 and raised.value.kind == "quota_exceeded"
    assert 1 <= raised.value.retry_after <= 24 * 3600
    # Redis unreachable: allowed, not a 500.
    offline = dataclasses.replace(services, redis=make_redis(dead_redis_url()))
    try:
        enforce_token_quota(offline, user)
    finally:
        offline.redis.close()
