"""Observability on the real stack: the request id reaches the worker's log lines, and
the API under gunicorn counts requests across its processes and logs JSON."""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import uuid

import pytest
import requests

from devstack.faultstack import wait_until
from shared.config import ROOT
from tests.integration.helpers import new_conversation, wait_job

GUNICORN_PROCESSES = 2


def json_lines(lines: list[str]) -> list[dict]:
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def test_the_request_id_follows_a_turn_into_the_worker(stack, client, alice):
    request_id = f"it-{uuid.uuid4().hex[:12]}"
    conversation = new_conversation(client, alice)
    response = client.post(f"/v1/conversations/{conversation}/messages", json={"content": "trace me"},
                           headers={**alice, "X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id
    job_id = response.get_json()["job"]["id"]
    assert wait_job(client, alice, job_id)["status"] == "succeeded"
    # Celery logs the task's success inside the task, so that line carries the bound ids;
    # the task ends after the job's end is published, so the line may follow the answer.
    worker = stack.workers[0]
    lines = wait_until(lambda: [e for e in json_lines(worker.lines) if e.get("job_id") == job_id], timeout=10,
                       what="a worker line carrying the job id")
    assert all(e.get("request_id") == request_id for e in lines)
    assert any("succeeded" in e["event"] for e in lines)


def test_metrics_need_no_key(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "parley_http_requests_total" in response.get_data(as_text=True)


class Gunicorn:
    """The API as deployed (api/gunicorn_conf.py), in a child process."""

    def __init__(self, env: dict, port: int):
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "-b", f"127.0.0.1:{port}",
             "api.wsgi:app"], cwd=ROOT, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            if "Listening at:" in line:
                self.listening.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            # Up to gunicorn's graceful_timeout (30 s): an idle gevent worker has been seen to take
            # all of it after serving refused keys (not yet understood; see the README's Reliability).
            self.process.wait(45)


@pytest.fixture()
def gunicorn(stack, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by a previous run")  # must be cleared at start
    env = {**stack.env, "VAR_DIR": str(tmp_path / "var"), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "API_PROCESSES": str(GUNICORN_PROCESSES), "API_THREADS": "4"}
    server = Gunicorn(env, port)
    try:
        assert server.listening.wait(60), "gunicorn did not start:\n" + "".join(server.lines[-30:])
        server.url = f"http://127.0.0.1:{port}"
        yield server
    finally:
        server.stop()


def sample(body: str, name: str, **labels) -> float:
    rendered = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    match = re.search(rf"^{re.escape(name)}{{{re.escape(rendered)}}} (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def test_gunicorn_processes_share_one_count_and_log_json(gunicorn):
    for _ in range(12):  # a new connection each, so either process may serve each
        assert requests.get(f"{gunicorn.url}/healthz", timeout=10).status_code == 200
    for _ in range(3):
        response = requests.get(f"{gunicorn.url}/v1/jobs/{uuid.uuid4()}", timeout=10,
                                headers={"Authorization": "Bearer pk_not_a_key", "X-Request-ID": "gunicorn-401"})
        assert response.status_code == 401 and response.headers["X-Request-ID"] == "gunicorn-401"

    response = requests.get(f"{gunicorn.url}/metrics", timeout=10)
    assert response.status_code == 200, "a stale file left in the metrics directory breaks /metrics"
    body = response.text
    assert sample(body, "parley_http_requests_total", method="GET", route="/healthz", status="200") == 12
    assert sample(body, "parley_http_requests_total", method="GET", route="/v1/jobs/<job_id>", status="401") == 3
    assert sample(body, "parley_http_request_duration_seconds_count", method="GET", route="/healthz") == 12

    gunicorn.stop()
    events = json_lines(gunicorn.lines)
    assert any("Listening at:" in e["event"] and e["logger"] == "gunicorn.error" for e in events)
    denied = [e for e in events if e.get("route") == "/v1/jobs/<job_id>"]
    assert len(denied) == 3 and all(e["status"] == 401 and e["request_id"] == "gunicorn-401" for e in denied)
