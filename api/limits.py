"""Abuse limits: requests per minute per API key, and model tokens per user per day.

The request limit is flask-limiter counting in the same Redis as everything
else, one shared counter per key across all endpoints.
"""
from __future__ import annotations

import logging
import math
import time

import redis
from flask import Flask, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit

from api.capacity import REDIS_CONNECTIONS
from api.context import PUBLIC_PATHS, services
from api.openapi import complete
from api.errors import envelope
from shared.config import Settings
from shared.users import hash_key

log = logging.getLogger("parley.api")
RETRY_FALLBACK_SECONDS = 60  # when the window's end cannot be read


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


def _too_many_requests(limit: RequestLimit):
    try:
        retry_after = max(1, math.ceil(limit.window.reset_time - time.time()))
    except Exception:  # the counter's store went away between the hit and now
        retry_after = RETRY_FALLBACK_SECONDS
    return envelope(429, "rate_limited", f"Too many requests: at most {limit.limit.amount} a minute per key.",
                    {"Retry-After": str(retry_after)})


def _is_public() -> bool:
    return request.url_rule is not None and request.url_rule.rule in PUBLIC_PATHS


def init_rate_limits(app: Flask, settings: Settings) -> Limiter | None:
    """RATE_LIMIT_PER_MINUTE requests a minute per key; None when it is 0 (off)."""
    if settings.rate_limit_per_minute <= 0:
        return None
    per_key = f"{settings.rate_limit_per_minute} per minute"
    limiter = Limiter(
        rate_limit_key, app=app, application_limits=[per_key], strategy="fixed-window",
        storage_uri=_storage_uri(settings.require("redis_url")),
        # A pool that requests queue for (up to 2 s, then the fallback below), as in
        # api/capacity.py: with thousands of requests at once under the gevent worker, a
        # growing pool would open a connection each, and a pool never shrinks.
        storage_options={"connection_pool": redis.BlockingConnectionPool.from_url(
            settings.require("redis_url"), max_connections=REDIS_CONNECTIONS, timeout=2,
            socket_connect_timeout=2, socket_timeout=2)},
        key_prefix="parley",
        # Redis down: count in this process's memory until Redis answers again (re-probed
        # with backoff), and let any other limiter failure through, logged: a broken
        # limiter must not turn requests into 500s.
        in_memory_fallback=[ApplicationLimit(per_key, key_function=rate_limit_key)],
        in_memory_fallback_enabled=True, swallow_errors=True, on_breach=_too_many_requests, headers_enabled=False,
    )
    limiter.request_filter(_is_public)
    return limiter


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
