"""Request ids, one log line per request, and Prometheus metrics at `/metrics`.

Under gunicorn each worker process counts into PROMETHEUS_MULTIPROC_DIR (set by
api/gunicorn_conf.py) and `/metrics` sums every process's files; without that
variable (tests, a single process) it reports this process's registry.
"""
from __future__ import annotations

import logging
import os
import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

from shared.logs import bind_context, clear_context

log = logging.getLogger("parley.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_ID_ARGS = ("conversation_id", "job_id")

REQUESTS = Counter("parley_http_requests_total", "HTTP requests by method, route (the URL rule) and status.",
                   ["method", "route", "status"])
LATENCY = Histogram("parley_http_request_duration_seconds",
                    "Time until the response is ready (for a stream: until it starts), by method and route.",
                    ["method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60))


def init_observability(app: Flask) -> None:
    """Register first, so a request rejected by a later hook is still counted and logged."""
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", metrics)


def request_id() -> str:
    """The caller's X-Request-ID when it is a plain token, else a new one."""
    incoming = request.headers.get(REQUEST_ID_HEADER, "").strip()
    return incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def _start() -> None:
    g.request_started = time.perf_counter()
    g.request_id = request_id()
    clear_context()
    ids = {name: value for name, value in (request.view_args or {}).items()
           if name in _ID_ARGS and isinstance(value, str) and len(value) <= 64}
    bind_context(request_id=g.request_id, **ids)


def _route() -> str:
    # The URL rule, never the raw path: one series per endpoint, not per id.
    return request.url_rule.rule if request.url_rule is not None else "unmatched"


def _finish(response: Response) -> Response:
    started = g.get("request_started")
    if started is None:  # a hook before ours answered
        return response
    seconds = time.perf_counter() - started
    method = request.method if request.method in _METHODS else "OTHER"
    route = _route()
    REQUESTS.labels(method, route, str(response.status_code)).inc()
    LATENCY.labels(method, route).observe(seconds)
    response.headers[REQUEST_ID_HEADER] = g.request_id
    log.info("%s %s %s %.1fms", request.method, request.path, response.status_code, seconds * 1000,
             extra={"method": request.method, "route": route, "path": request.path,
                    "status": response.status_code, "duration_ms": round(seconds * 1000, 1)})
    return response


def metrics() -> Response:
    """Prometheus text format; not behind a key (see PUBLIC_PATHS)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
