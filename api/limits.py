"""Abuse limits: requests per minute per API key, and model tokens per user per day.

The request limit is a fixed window per key (the `limits` library, the one flask-limiter
is built on) counted in the same Redis as everything else, one shared counter per key
across all endpoints: one script call a request. flask-limiter itself did nothing more
for one application-wide limit, and resolving its decorators, exemptions and fallbacks
was half the limiter's cost a request (~8 % of the API's CPU, py-spy).
"""
from __future__ import annotations

import logging
import math
import time

import redis
from flask import Flask, request
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter

from api.capacity import REDIS_CONNECTIONS
from api.context import PUBLIC_PATHS, services
from api.openapi import complete
from api.errors import envelope
from shared.config import Settings
from shared.users import hash_key

log = logging.getLogger("parley.api")
RETRY_FALLBACK_SECONDS = 60  # when the window's end cannot be read
REPROBE_SECONDS = (1, 60)  # Redis down: counted in memory, Redis tried again after 1 s, doubling to 60 s


def rate_limit_key() -> str:
    """Whom a request counts against: its bearer key's SHA-256 (the key itself never
    reaches Redis), or the client address for a request without one."""
    values = request.headers.getlist("Authorization")
    if len(values) == 1:
        scheme, _, key = values[0].partition(" ")
        if scheme.lower() == "bearer" and key.strip():
            return "key:" + hash_key(key.strip())
    return "addr:" + (request.remote_addr or "unknown")


def _storage_uri(redis_url: str) -> str:
    return "redis+unix://" + redis_url[len("unix://"):] if redis_url.startswith("unix://") else redis_url


class RequestLimit:
    """RATE_LIMIT_PER_MINUTE requests a minute per key, checked before anything else runs
    (a flood of bad keys is counted too); health checks and the document are exempt.
    Redis down: counted in this process's memory until Redis answers again (tried again
    with backoff); any other failure of the limiter lets the request through, logged: a
    broken limiter must not turn requests into 500s."""

    def __init__(self, settings: Settings) -> None:
        self.item = RateLimitItemPerMinute(settings.rate_limit_per_minute)
        url = settings.require("redis_url")
        # A pool that requests queue for (up to 2 s, then memory), as in api/capacity.py:
        # with thousands of requests at once under the gevent worker, a growing pool would
        # open a connection each, and a pool never shrinks.
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=REDIS_CONNECTIONS, timeout=2,
                                                     socket_connect_timeout=2, socket_timeout=2)
        self.shared = FixedWindowRateLimiter(RedisStorage(_storage_uri(url), connection_pool=pool,
                                                          key_prefix="parley"))
        self.local = FixedWindowRateLimiter(MemoryStorage())
        self._redis_back_at, self._reprobe = 0.0, REPROBE_SECONDS[0]

    def check(self):
        """Flask's before_request: None to go on, or the 429 answer."""
        if request.url_rule is not None and request.url_rule.rule in PUBLIC_PATHS:
            return None
        key = rate_limit_key()
        try:
            limiter = self._limiter()
            try:
                allowed = limiter.hit(self.item, key)
            except (redis.RedisError, OSError) as error:
                limiter = self._redis_failed(error)
                allowed = limiter.hit(self.item, key)
            if limiter is self.shared:
                self._reprobe = REPROBE_SECONDS[0]
            return None if allowed else self._too_many(limiter, key)
        except Exception:
            log.exception("rate limiter failed; request let through")
            return None

    def _limiter(self) -> FixedWindowRateLimiter:
        return self.shared if time.monotonic() >= self._redis_back_at else self.local

    def _redis_failed(self, error: Exception) -> FixedWindowRateLimiter:
        log.warning("rate limiter: Redis unavailable, counting in memory for %d s: %s", self._reprobe, error)
        self._redis_back_at = time.monotonic() + self._reprobe
        self._reprobe = min(self._reprobe * 2, REPROBE_SECONDS[1])
        return self.local

    def _too_many(self, limiter: FixedWindowRateLimiter, key: str):
        try:
            retry_after = max(1, math.ceil(limiter.get_window_stats(self.item, key).reset_time - time.time()))
        except Exception:  # the counter's store went away between the hit and now
            retry_after = RETRY_FALLBACK_SECONDS
        return envelope(429, "rate_limited", f"Too many requests: at most {self.item.amount} a minute per key.",
                        {"Retry-After": str(retry_after)})


def init_rate_limits(app: Flask, settings: Settings) -> RequestLimit | None:
    """RATE_LIMIT_PER_MINUTE requests a minute per key; None when it is 0 (off)."""
    if settings.rate_limit_per_minute <= 0:
        return None
    limit = app.extensions["limiter"] = RequestLimit(settings)
    app.before_request(limit.check)
    return limit


def document_limits(spec: dict) -> dict:
    """Add the answers the limits give to the OpenAPI document: 429 on every operation
    that needs a key, 413 on every one that takes a body (MAX_REQUEST_BYTES); then the
    bounds the settings set (api/openapi.py)."""
    envelope_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    too_many = {"description": "Too Many Requests", "content": envelope_content,
                "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}}
    too_large = {"description": "Content Too Large", "content": envelope_content}
    for operations in spec.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if operation.get("security"):
                responses.setdefault("429", too_many)
            if method in ("post", "put", "patch"):
                responses.setdefault("413", too_large)
    return complete(spec, services().settings)
