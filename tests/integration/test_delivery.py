"""Delivery: live token streams over SSE (resumable), cancel, the busy policy."""
from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import select

from offline_model.messages import text_of
from shared.models import Turn
from tests.integration.helpers import new_conversation, say, submit, wait_job
from tests.integration.sse import SseReader, parse

MODEL_DEFAULTS = {"delay_ms": 0, "chunk_chars": 8, "stream_delay_ms": 0, "faults": []}
LONG = "Tell me about the sea, the wind and the long grey light of a northern morning."


@pytest.fixture()
def model(stack):
    """Sets the offline model's pace (and faults) for one test; restores it after."""
    def control(**settings) -> None:
        requests.post(f"{stack.model.url}/_control", json=settings, timeout=5).raise_for_status()

    yield control
    control(**MODEL_DEFAULTS)


def model_state(stack) -> dict:
    return requests.get(f"{stack.model.url}/_requests", timeout=5).json()


def wait_until(predicate, timeout: float = 20.0):
    """For state with no event to await (another process's socket); bounded."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if value := predicate():
            return value
        pause.wait(0.05)
    raise AssertionError("condition not reached in time")


def stream_message(client, headers, conversation_id: str, content: str, **body):
    return client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content, **body},
                       headers={**headers, "Accept": "text/event-stream"}, buffered=False)


def test_submit_and_stream_in_one_request(stack, client, alice, model):
    model(chunk_chars=3)
    conversation_id = new_conversation(client, alice)
    response = stream_message(client, alice, conversation_id, LONG)
    assert response.headers["Location"].startswith("/v1/jobs/")
    events = SseReader(response).rest()

    types = [e.type for e in events]
    assert types[:2] == ["job.queued", "job.started"] and types[-1] == "job.succeeded"
    assert set(types[2:-1]) == {"message.delta"} and len(types) > 10
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    streamed = "".join(e.data["text"] for e in events if e.type == "message.delta")
    stored = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"][-1]
    assert streamed == events[-1].data["reply"]["content"] == stored["content"]
    assert events[-1].data["status"] == "succeeded"


def test_reconnect_resumes_without_gap_or_duplicate(stack, client, alice, model):
    model(chunk_chars=2, stream_delay_ms=1500)
    conversation_id = new_conversation(client, alice)
    job = submit(client, alice, conversation_id, LONG)
    url = f"/v1/jobs/{job['id']}/events"

    first = SseReader(client.get(url, headers=alice, buffered=False))
    head = []
    while sum(e.type == "message.delta" for e in head) < 3:
        head.append(first.next_event())
    first.close()  # the connection drops mid-reply
    tail = SseReader(client.get(url, headers={**alice, "Last-Event-ID": str(head[-1].id)},
                                buffered=False)).rest()

    events = head + tail
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "job.succeeded"
    assert "".join(e.data["text"] for e in events if e.type == "message.delta") == events[-1].data["reply"]["content"]

    # After the end: the whole replay, or any part of it with ?after=.
    replay, _ = parse(client.get(url, headers=alice).get_data(as_text=True))
    assert [(e.id, e.type, e.data) for e in replay] == [(e.id, e.type, e.data) for e in events]
    after, _ = parse(client.get(f"{url}?after=5", headers=alice).get_data(as_text=True))
    assert [e.id for e in after] == [e.id for e in events[5:]]


def test_quiet_stream_sends_pings(client, alice, model):
    model(delay_ms=1500)  # more than two ping intervals (SSE_PING_SECONDS=0.5) before the first token
    conversation_id = new_conversation(client, alice)
    text = stream_message(client, alice, conversation_id, "Hi").get_data(as_text=True)
    events, pings = parse(text)
    assert pings >= 2 and events[-1].type == "job.succeeded"


def test_expired_events_still_give_the_final_state(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    job = say(client, alice, conversation_id, "Hello")
    stack.services.redis.delete(f"parley:job:{job['id']}:events", f"parley:job:{job['id']}:final")

    events, _ = parse(client.get(f"/v1/jobs/{job['id']}/events?after=7", headers=alice).get_data(as_text=True))
    assert [(e.id, e.type) for e in events] == [(8, "job.succeeded")]
    assert events[0].data["reply"] == job["reply"]


def test_end_missing_from_the_stream_is_recovered_from_the_database(stack, client, alice):
    """A worker that died between committing the turn and publishing its end."""
    conversation_id = new_conversation(client, alice)
    job = say(client, alice, conversation_id, "Hello")
    key, redis = f"parley:job:{job['id']}:events", stack.services.redis
    entries = redis.xrange(key)
    redis.delete(key, f"parley:job:{job['id']}:final")
    for entry_id, fields in entries[:-1]:  # the stream as it was before the end
        redis.xadd(key, fields, id=entry_id)

    events, _ = parse(client.get(f"/v1/jobs/{job['id']}/events", headers=alice).get_data(as_text=True))
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "job.succeeded" and events[-1].data["reply"] == job["reply"]


def test_bad_last_event_id_is_a_400(client, alice):
    conversation_id = new_conversation(client, alice)
    job = say(client, alice, conversation_id, "Hello")
    response = client.get(f"/v1/jobs/{job['id']}/events", headers={**alice, "Last-Event-ID": "abc"})
    assert response.status_code == 400 and response.get_json()["error"]["type"] == "invalid_request"


def test_cancel_a_queued_job_it_never_runs(stack, client, alice, model):
    model(delay_ms=1500)
    conversation_id = new_conversation(client, alice)
    running = submit(client, alice, conversation_id, "first")
    queued = submit(client, alice, conversation_id, "second, never sent")

    cancelled = client.post(f"/v1/jobs/{queued['id']}/cancel", headers=alice)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert wait_job(client, alice, running["id"])["status"] == "succeeded"
    events, _ = parse(client.get(f"/v1/jobs/{queued['id']}/events", headers=alice).get_data(as_text=True))
    assert [e.type for e in events] == ["job.queued", "job.cancelled"]

    model(delay_ms=0)
    after = say(client, alice, conversation_id, "third")
    sent = [text_of(m["content"]) for m in model_state(stack)["requests"][-1]["messages"]]
    assert sent == ["first", wait_job(client, alice, running["id"])["reply"]["content"], "third"]
    assert all("never sent" not in str(r) for r in model_state(stack)["requests"])
    assert after["status"] == "succeeded"


def test_cancel_a_running_job_stops_the_model_and_writes_no_turn(stack, client, alice, model):
    model(chunk_chars=2, stream_delay_ms=4000)
    conversation_id = new_conversation(client, alice)
    first = say(client, alice, conversation_id, "Hi")
    aborted_before = model_state(stack)["streams"]["aborted"]

    reader = SseReader(stream_message(client, alice, conversation_id, LONG))
    head = reader.until(lambda e: e.type == "message.delta")
    job_id = head[0].data["id"]
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    tail = reader.rest()
    assert tail[-1].type == "job.cancelled" and all(e.type == "message.delta" for e in tail[:-1])
    assert [e.id for e in head + tail] == list(range(1, len(head + tail) + 1))

    # The worker hung up on the model mid-stream, and wrote nothing for the job.
    wait_until(lambda: model_state(stack)["streams"]["aborted"] > aborted_before)
    with stack.services.sessions() as session:
        assert session.scalar(select(Turn).where(Turn.job_id == uuid.UUID(job_id))) is None
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice).status_code == 409
    assert wait_job(client, alice, job_id)["status"] == "cancelled"

    model(**MODEL_DEFAULTS)
    say(client, alice, conversation_id, "Still there?")
    sent = [text_of(m["content"]) for m in model_state(stack)["requests"][-1]["messages"]]
    assert sent == ["Hi", first["reply"]["content"], "Still there?"]
    messages = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["Hi", "Still there?"]


def test_cancel_a_finished_job_is_a_409(client, alice):
    conversation_id = new_conversation(client, alice)
    job = say(client, alice, conversation_id, "Hello")
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
    assert response.status_code == 409 and response.get_json()["error"]["type"] == "job_finished"


def test_on_busy_reject_admits_exactly_one_of_concurrent_submits(app, alice, model):
    model(delay_ms=2000)
    client = app.test_client()
    conversation_id = new_conversation(client, alice)

    def send(i: int):
        response = app.test_client().post(f"/v1/conversations/{conversation_id}/messages",
                                          json={"content": f"m{i}", "on_busy": "reject"}, headers=alice)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(8)))
    accepted = [body["job"] for status, body in results if status == 202]
    assert len(accepted) == 1
    assert {(status, body["error"]["type"]) for status, body in results if status != 202} == {
        (409, "conversation_busy")}
    # The default policy queues behind it instead.
    queued = submit(client, alice, conversation_id, "later")
    assert queued["status"] == "queued"
    for job in (accepted[0], queued):
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
        assert wait_job(client, alice, job["id"])["status"] == "cancelled"


def test_jobs_in_flight_are_capped_per_user(stack, make_user, model):
    from dataclasses import replace

    from api import create_app

    capped = stack.settings.model_copy(update={"max_jobs_in_flight": 3})
    client = create_app(capped, replace(stack.services, settings=capped)).test_client()
    model(delay_ms=3000)
    headers = make_user()
    jobs = [submit(client, headers, new_conversation(client, headers), f"m{i}") for i in range(3)]
    conversation_id = new_conversation(client, headers)
    response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "one more"},
                           headers=headers)
    assert response.status_code == 429 and response.get_json()["error"]["type"] == "too_many_jobs"
    for job in jobs:
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
    fits = submit(client, headers, conversation_id, "now it fits")
    assert fits["status"] == "queued"
    client.post(f"/v1/jobs/{fits['id']}/cancel", headers=headers)  # leave no traffic for later tests


def test_a_failed_stream_is_retried_and_resets_live_clients(stack, client, alice, model):
    model(chunk_chars=3, faults=["overloaded_midstream"])
    conversation_id = new_conversation(client, alice)
    events = SseReader(stream_message(client, alice, conversation_id, LONG)).rest()
    types = [e.type for e in events]
    assert types.count("message.reset") == 1 and types[-1] == "job.succeeded"
    after_reset = events[types.index("message.reset") + 1:]
    assert "".join(e.data["text"] for e in after_reset if e.type == "message.delta") == \
        events[-1].data["reply"]["content"]
    assert events[-1].data["attempts"] == 1  # retried inside the model call, not as a new job attempt


def test_usage_counts_prompt_cache_reads_on_the_next_turn(client, alice):
    # Past the model's minimum cacheable length (1,024 tokens): a shorter prefix is never cached.
    conversation_id = new_conversation(client, alice, system="You answer in one line, always. " * 150)
    first = say(client, alice, conversation_id, "Hello")["reply"]["usage"]
    second = say(client, alice, conversation_id, "Again")["reply"]["usage"]
    assert first["cache_creation_input_tokens"] > 0
    assert second["cache_read_input_tokens"] >= first["cache_creation_input_tokens"]


def test_a_permanent_model_error_fails_the_job_with_its_type(client, alice, model):
    model(faults=["context_too_long"])
    conversation_id = new_conversation(client, alice)
    job = wait_job(client, alice, submit(client, alice, conversation_id, "Hello")["id"])
    assert job["status"] == "failed" and job["error"]["type"] == "context_too_long"
    assert job["request"]["content"] == "Hello"  # the user's message stays on the job
    assert client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"] == []


def test_usage_per_day_survives_deleting_the_conversation(client, make_user):
    headers = make_user()
    conversation_id = new_conversation(client, headers)
    replies = [say(client, headers, conversation_id, text)["reply"]["usage"] for text in ("one", "two")]
    client.delete(f"/v1/conversations/{conversation_id}", headers=headers)

    report = client.get("/v1/usage", headers=headers).get_json()
    assert report["totals"]["turns"] == 2 and len(report["days"]) == 1
    for field in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        assert report["totals"][field] == sum(r[field] for r in replies)
    empty = client.get("/v1/usage?from=2020-01-01&to=2020-01-31", headers=headers).get_json()
    assert empty["totals"]["turns"] == 0 and empty["days"] == []
    assert client.get("/v1/usage?from=2020-02-01&to=2020-01-01", headers=headers).status_code == 400


def test_daily_token_quota_stops_new_messages(stack, client, make_user):
    from dataclasses import replace

    from api import create_app
    from shared.quotas import TokenQuota
    from shared.users import authenticate

    headers = make_user()
    with stack.services.sessions() as session:
        user_id = authenticate(session, headers["Authorization"].split()[1]).id
    capped = stack.settings.model_copy(update={"model_tokens_per_day": 100})
    capped_client = create_app(capped, replace(stack.services, settings=capped)).test_client()
    conversation_id = new_conversation(client, headers)
    assert submit(capped_client, headers, conversation_id, "within the quota")["status"] == "queued"
    TokenQuota(stack.services.redis, 100).record(user_id, 150)  # what capped workers count after turns
    response = capped_client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "more"},
                                  headers=headers)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
