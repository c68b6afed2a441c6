"""The API's request ids, per-route metrics and /metrics, on a bare Flask app (no services)."""
from __future__ import annotations

import re

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from api.observability import init_observability
from shared.logs import context_value


@pytest.fixture()
def client():
    app = Flask(__name__)
    init_observability(app)
    seen = {}

    @app.get("/v1/jobs/<job_id>")
    def job(job_id):
        seen.update(request_id=context_value("request_id"), job_id=context_value("job_id"))
        return {"id": job_id}

    client = app.test_client()
    client.seen = seen
    return client


def count(route: str, status: str, method: str = "GET") -> float:
    return REGISTRY.get_sample_value("parley_http_requests_total",
                                     {"method": method, "route": route, "status": status}) or 0.0


def test_requests_are_counted_by_route_not_by_path(client):
    before = count("/v1/jobs/<job_id>", "200")
    latency_before = REGISTRY.get_sample_value("parley_http_request_duration_seconds_count",
                                               {"method": "GET", "route": "/v1/jobs/<job_id>"}) or 0.0
    client.get("/v1/jobs/one")
    client.get("/v1/jobs/two")
    assert count("/v1/jobs/<job_id>", "200") == before + 2
    assert REGISTRY.get_sample_value("parley_http_request_duration_seconds_count",
                                     {"method": "GET", "route": "/v1/jobs/<job_id>"}) == latency_before + 2
    assert count("/v1/jobs/one", "200") == 0


def test_unknown_paths_share_one_series(client):
    before = count("unmatched", "404")
    client.get("/no/such/thing")
    client.get("/nor/this")
    assert count("unmatched", "404") == before + 2


def test_metrics_endpoint_speaks_prometheus_text(client):
    client.get("/v1/jobs/one")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    body = response.get_data(as_text=True)
    assert re.search(r'^parley_http_requests_total\{method="GET",route="/v1/jobs/<job_id>",status="200"\} \d',
                     body, re.M)
    assert "parley_http_request_duration_seconds_bucket" in body


def test_a_sane_request_id_is_kept_and_echoed(client):
    response = client.get("/v1/jobs/one", headers={"X-Request-ID": "edge-7f3a.42:b"})
    assert response.headers["X-Request-ID"] == "edge-7f3a.42:b"
    assert client.seen == {"request_id": "edge-7f3a.42:b", "job_id": "one"}


@pytest.mark.parametrize("incoming", [None, "", "has spaces", "x" * 129, "<script>", "-leading-dash"])
def test_a_missing_or_odd_request_id_is_replaced(client, incoming):
    headers = {"X-Request-ID": incoming} if incoming is not None else {}
    first = client.get("/v1/jobs/one", headers=headers).headers["X-Request-ID"]
    second = client.get("/v1/jobs/one", headers=headers).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second
    assert client.seen["request_id"] == second
