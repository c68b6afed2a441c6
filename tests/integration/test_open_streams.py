"""Open streams at scale: the per-user cap, and a stream served by a gunicorn (gevent)
process that learns of its job's events through the process's one subscription."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select, text

from devstack.ports import free_port
from devstack.processes import WorkerProcess
from shared.config import ROOT
from shared.models import Job
from tests.integration.helpers import new_conversation
from tests.integration.sse import SseReader, parse

CAP = 2


@pytest.fixture()
def capped_client(stack):
    """The API with MAX_OPEN_STREAMS_PER_USER=2 (its own subscription, closed after)."""
    from api import create_app

    settings = stack.settings.model_copy(update={"max_open_streams_per_user": CAP})
    app = create_app(settings, dataclasses.replace(stack.services, settings=settings))
    yield app.test_client()
    app.extensions["parley"].waits.close()


def open_stream(client, headers, job_id: str):
    return client.get(f"/v1/jobs/{job_id}/events", headers={**headers, "Accept": "text/event-stream"},
                      buffered=False)


def jobs_in(stack, conversation_id: str) -> int:
    with stack.services.sessions() as session:
        return session.scalar(select(func.count()).select_from(Job).where(
            Job.conversation_id == uuid.UUID(conversation_id)))


def held_job(stack, conversation_id: str) -> str:
    """A job that a worker elsewhere seems to hold for an hour: its streams stay open."""
    with stack.services.engine.begin() as connection:
        job_id = str(connection.execute(text("""
            INSERT INTO jobs (id, user_id, conversation_id, status, request, attempts, worker, started_at,
                              lease_expires_at)
            SELECT gen_random_uuid(), user_id, conversation_id, 'running', CAST('{"content": "hi"}' AS jsonb), 1, 'elsewhere',
                   now(), now() + interval '1 hour'
              FROM conversations WHERE conversation_id = :c RETURNING id"""), {"c": conversation_id}).scalar())
    stack.services.events.add(job_id, "job.queued", {"id": job_id})
    return job_id


def test_streams_and_long_polls_beyond_the_per_user_cap_are_429(stack, capped_client, make_user):
    client, alice, bob = capped_client, make_user(), make_user()
    conversation = new_conversation(client, alice)
    job_id = held_job(stack, conversation)
    held = [SseReader(open_stream(client, alice, job_id)) for _ in range(CAP)]
    for reader in held:
        assert reader.next_event().type == "job.queued"

    refused = open_stream(client, alice, job_id)
    assert refused.status_code == 429 and refused.headers["Retry-After"].isdigit()
    error = refused.get_json()["error"]
    assert error["type"] == "too_many_streams" and f"at most {CAP}" in error["message"]
    assert "MAX_OPEN_STREAMS_PER_USER" in error["message"]
    # A long-poll counts too; a submit-and-stream is refused before its job exists.
    assert client.get(f"/v1/jobs/{job_id}?wait=5", headers=alice).status_code == 429
    streamed = client.post(f"/v1/conversations/{conversation}/messages", json={"content": "more"},
                           headers={**alice, "Accept": "text/event-stream"})
    assert streamed.status_code == 429 and jobs_in(stack, conversation) == 1
    # Another user is not affected; a wait without waiting is no stream.
    bobs = SseReader(open_stream(client, bob, held_job(stack, new_conversation(client, bob))))
    assert bobs.next_event().type == "job.queued"
    bobs.close()
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200

    held.pop().close()  # hanging up gives the place back
    again = SseReader(open_stream(client, alice, job_id))
    assert again.next_event().type == "job.queued"
    again.close()
    for reader in held:
        reader.close()
    client.delete(f"/v1/conversations/{conversation}", headers=alice)


@pytest.fixture()
def gevent_api(stack):
    """The API as `make run` starts it (gunicorn, gevent worker), one process, with a broker
    of its own (Redis database 5) so that only a worker started by the test runs its jobs."""
    broker = stack.env["REDIS_URL"].rsplit("/", 1)[0] + "/5"
    env = {**stack.env, "BROKER_URL": broker, "API_PROCESSES": "1", "API_CONNECTIONS": "1000"}
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "api/gunicorn_conf.py", "-b",
                                f"127.0.0.1:{port}", "api.wsgi:app"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    up = threading.Event()

    def drain() -> None:
        for line in process.stderr:
            lines.append(line)
            if "Booting worker" in line:
                up.set()
    threading.Thread(target=drain, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert up.wait(60), "".join(lines[-20:])
        for _ in range(200):  # the worker imports the app after it says it boots
            try:
                if requests.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                threading.Event().wait(0.05)
        yield url, env, lines
    finally:
        process.terminate()
        process.wait(30)


def test_a_stream_on_a_gevent_process_gets_a_job_run_by_a_worker_started_later(stack, gevent_api, make_user):
    url, env, lines = gevent_api
    alice = make_user()
    http = requests.Session()
    conversation = http.post(f"{url}/v1/conversations", json={"name": "later"}, headers=alice).json()
    conversation_id = conversation["id"]
    job = http.post(f"{url}/v1/conversations/{conversation_id}/messages",
                    json={"content": "Tell me about the tide."}, headers=alice).json()["job"]
    with stack.services.engine.begin() as connection:  # the shared stack's sweeper would re-send it to its worker
        connection.execute(text("UPDATE jobs SET lease_expires_at = now() + interval '1 hour' WHERE id = :id"),
                           {"id": job["id"]})
    stream = http.get(f"{url}/v1/jobs/{job['id']}/events", headers={**alice, "Accept": "text/event-stream"},
                      stream=True, timeout=60)
    assert stream.status_code == 200
    chunks = stream.iter_content(chunk_size=None, decode_unicode=True)
    received = ""
    while "event: job.queued" not in received:
        received += next(chunks)
    with ThreadPoolExecutor(1) as pool:
        long_poll = pool.submit(http.get, f"{url}/v1/jobs/{job['id']}?wait=30", headers=alice, timeout=60)
        late = WorkerProcess(env, f"late-{uuid.uuid4().hex[:6]}").wait_ready()
        try:
            for chunk in chunks:
                received += chunk
                if "event: job.succeeded" in received or "event: job.failed" in received:
                    break
            polled = long_poll.result(60)
        finally:
            late.stop()
    events, pings = parse(received)
    types = [e.type for e in events]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert types[:2] == ["job.queued", "job.started"] and types[-1] == "job.succeeded"
    assert set(types[2:-1]) == {"message.delta"}
    reply = events[-1].data["reply"]["content"]
    assert "".join(e.data["text"] for e in events if e.type == "message.delta") == reply
    assert polled.status_code == 200 and polled.json()["status"] == "succeeded"
    with stack.services.sessions() as session:
        assert session.scalar(select(Job.worker).where(Job.id == uuid.UUID(job["id"]))).startswith("late-")
    # Resuming after the end gives exactly the rest, from any process.
    rest = http.get(f"{url}/v1/jobs/{job['id']}/events?after=2", headers={**alice, "Accept": "text/event-stream"},
                    timeout=30)
    assert [e.id for e in parse(rest.text)[0]] == list(range(3, len(events) + 1))
    assert not [line for line in lines if '"level": "error"' in line or "Traceback" in line]
