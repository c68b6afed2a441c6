"""Two worker processes share the turns; every conversation still runs in submit order."""
from __future__ import annotations

import re
import urllib.request
import uuid

import pytest
import requests
from sqlalchemy import select

from devstack.ports import free_port
from devstack.processes import WorkerProcess
from shared.models import Job
from tests.integration.helpers import new_conversation, submit, wait_job

CONVERSATIONS, MESSAGES = 6, 3
# Long enough that the first worker's four threads are all busy when the six first
# turns arrive, so the broker must hand some to the second worker.
MODEL_DELAY_MS = 1000


@pytest.fixture()
def slow_model(stack):
    def control(delay_ms: int) -> None:
        requests.post(f"{stack.model.url}/_control", json={"delay_ms": delay_ms}, timeout=5).raise_for_status()

    control(MODEL_DELAY_MS)
    yield
    control(0)


@pytest.fixture()
def second_worker(stack):
    port = free_port()
    worker = WorkerProcess({**stack.env, "WORKER_METRICS_PORT": str(port)}, "w2", concurrency=4).wait_ready()
    worker.metrics_url = f"http://127.0.0.1:{port}/metrics"
    yield worker
    worker.stop()


def scrape(url: str, sample: str) -> float:
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    match = re.search(rf"^{re.escape(sample)} (\S+)$", body, re.M)
    return float(match.group(1)) if match else 0.0


def test_turns_spread_over_two_workers_in_conversation_order(stack, client, make_user, slow_model, second_worker):
    run = uuid.uuid4().hex[:6]
    users = [make_user() for _ in range(CONVERSATIONS)]  # a user each: in-flight caps are per user
    conversations = [new_conversation(client, user, name=f"scale {run} {i}") for i, user in enumerate(users)]
    jobs = {c: [submit(client, user, c, f"{run} c{i} m{n}")["id"] for n in range(1, MESSAGES + 1)]
            for i, (c, user) in enumerate(zip(conversations, users))}
    for c, user in zip(conversations, users):
        for job_id in jobs[c]:
            assert wait_job(client, user, job_id)["status"] == "succeeded"

    with stack.services.sessions() as session:
        rows = {str(job.id): job for job in session.scalars(
            select(Job).where(Job.conversation_id.in_([uuid.UUID(c) for c in conversations])))}
    nodes = {rows[job_id].worker.split("@")[0] for ids in jobs.values() for job_id in ids}
    assert nodes == {"w1", "w2"}, "both workers ran turns"

    for i, (conversation, user) in enumerate(zip(conversations, users)):
        ordered = [rows[job_id] for job_id in jobs[conversation]]
        for earlier, later in zip(ordered, ordered[1:]):
            assert later.started_at >= earlier.finished_at, "one turn of a conversation at a time"
        messages = client.get(f"/v1/conversations/{conversation}", headers=user).get_json()["messages"]
        assert [m["content"] for m in messages if m["role"] == "user"] == [
            f"{run} c{i} m{n}" for n in range(1, MESSAGES + 1)]
        # Each reply saw every message before it: 1, 3, then 5 messages.
        assert [m["content"] for m in messages if m["role"] == "assistant"] == [
            f'offline model: received {2 * n - 1} messages; last: "{run} c{i} m{n}"' for n in range(1, MESSAGES + 1)]

    ran_on_w2 = sum(1 for job in rows.values() if job.worker.startswith("w2@"))
    served = scrape(second_worker.metrics_url, 'parley_worker_tasks_total{state="success",task="parley.reply"}')
    assert served >= ran_on_w2 > 0, "the second worker's own /metrics counts its turns"
