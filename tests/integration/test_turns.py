"""Chat turns end to end: HTTP → PostgreSQL → Celery worker → offline model → S3 log."""
from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from sqlalchemy import select

from shared.models import Conversation, Job, Turn
from tests.conftest import TEST_CONTEXT_TOKENS
from tests.integration.helpers import new_conversation, say, submit, wait_job
from worker.window import rebuild_window


def _text(content) -> str:
    """Text blocks' text; other blocks (other tests' images, documents) read as nothing."""
    return content if isinstance(content, str) else "".join(block.get("text", "") for block in content)


def model_requests(stack) -> list[dict]:
    """What the model received, with content blocks (which carry cache marks) read as text."""
    import requests
    recorded = requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"]
    return [{**r, "system": _text(r.get("system", "")),
             "messages": [{"role": m["role"], "content": _text(m["content"])} for m in r["messages"]]}
            for r in recorded]


def test_multi_turn_conversation_model_sees_earlier_turns(stack, client, alice):
    conversation_id = new_conversation(client, alice, name="Trip", system="Answer briefly.")
    replies = [say(client, alice, conversation_id, text)["reply"]["content"] for text in ("Hi", "Plan a trip", "Thanks")]

    assert replies == [
        'offline model: received 1 messages; last: "Hi"',
        'offline model: received 3 messages; last: "Plan a trip"',
        'offline model: received 5 messages; last: "Thanks"',
    ]
    last_request = model_requests(stack)[-1]
    assert last_request["system"] == "Answer briefly."
    assert [m["content"] for m in last_request["messages"]] == ["Hi", replies[0], "Plan a trip", replies[1], "Thanks"]

    body = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()
    assert body["name"] == "Trip" and body["message_count"] == 6
    assert [(m["seq"], m["role"], m["content"]) for m in body["messages"]] == [
        (1, "user", "Hi"), (2, "assistant", replies[0]), (3, "user", "Plan a trip"),
        (4, "assistant", replies[1]), (5, "user", "Thanks"), (6, "assistant", replies[2])]

    # The log is in object storage, one object per turn; the rows are in PostgreSQL.
    s3 = boto3.client("s3", endpoint_url=stack.settings.s3_endpoint_url)
    with stack.services.sessions() as session:
        conversation = session.get(Conversation, uuid.UUID(conversation_id))
        turns = session.scalars(select(Turn).where(Turn.conversation_id == conversation.conversation_id)
                                .order_by(Turn.seq)).all()
    listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=f"logs/{conversation.s3_file_location}")
    assert [t.seq for t in turns] == [1, 2, 3]
    assert sorted(o["Key"] for o in listed["Contents"]) == [f"logs/{t.log_key}" for t in turns]
    entry = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"logs/{turns[1].log_key}")["Body"].read())
    assert [m["content"] for m in entry["messages"]] == ["Plan a trip", replies[1]]
    assert conversation.input_tokens > 0 and conversation.output_tokens == sum(t.output_tokens for t in turns)


def test_job_reports_reply_and_usage(client, alice):
    conversation_id = new_conversation(client, alice)
    job = say(client, alice, conversation_id, "Hello")
    assert job["conversation_id"] == conversation_id
    assert job["request"] == {"content": "Hello"}
    assert job["reply"]["role"] == "assistant" and job["reply"]["model"]
    assert job["reply"]["usage"]["input_tokens"] > 0 and job["reply"]["usage"]["output_tokens"] > 0
    assert job["started_at"] and job["finished_at"] and job["error"] is None


def test_window_trims_to_budget_and_stays_valid(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    texts = [f"message {i} " + "x" * 300 for i in range(6)]  # ~80 tokens each, replies a bit more
    for text in texts:
        say(client, alice, conversation_id, text)

    sent = model_requests(stack)[-1]["messages"]
    assert len(sent) < 11, "older turns must have been dropped"
    assert sent[0]["role"] == "user"
    assert all(a["role"] != b["role"] for a, b in zip(sent, sent[1:]))
    assert sent[-1]["content"] == texts[-1]
    history = [m["content"] for m in client.get(f"/v1/conversations/{conversation_id}", headers=alice)
               .get_json()["messages"]][:-1]
    assert [m["content"] for m in sent] == history[-len(sent):], "the window is the newest whole messages"
    # The whole conversation is still readable, only the window shrank.
    assert len(history) == 11


def test_lost_cache_rebuilds_the_same_window(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    for text in ("one " * 40, "two " * 40, "three " * 40, "four " * 40):
        say(client, alice, conversation_id, text)
    cached = stack.services.windows.get(conversation_id)
    assert cached is not None and cached.total_tokens <= TEST_CONTEXT_TOKENS

    stack.services.redis.flushdb()  # Redis lost everything
    with stack.services.sessions() as session:
        conversation = session.get(Conversation, uuid.UUID(conversation_id))
    assert rebuild_window(stack.services, conversation).to_json() == cached.to_json()

    say(client, alice, conversation_id, "five")
    assert model_requests(stack)[-1]["messages"][:-1] == cached.get_current_context()


def test_idempotency_key_returns_the_same_job(client, alice):
    conversation_id = new_conversation(client, alice)
    first = submit(client, alice, conversation_id, "once", **{"Idempotency-Key": "abc-1"})
    again = submit(client, alice, conversation_id, "once", **{"Idempotency-Key": "abc-1"})
    assert again["id"] == first["id"]
    wait_job(client, alice, first["id"])
    body = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()
    assert [m["content"] for m in body["messages"]][0::2] == ["once"], "one turn, not two"

    reused = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": "other"},
                         headers={**alice, "Idempotency-Key": "abc-1"})
    assert reused.status_code == 409 and reused.get_json()["error"]["type"] == "idempotency_key_reused"


def test_a_submit_that_loses_an_idempotency_race_answers_with_the_winners_job(stack, client, alice, monkeypatch):
    """Two submits of one request with one key, both past the key's first check: the
    later insert fails on the key, and that submit answers with the job the first made."""
    import api.service
    from shared.jobs import new_job

    conversation_id = new_conversation(client, alice)
    with stack.services.sessions() as session:
        user_id = session.get(Conversation, uuid.UUID(conversation_id)).user_id
    winner = new_job(user_id, uuid.UUID(conversation_id), {"content": "once"}, "race-1", None)
    checked = api.service.message_files

    def other_submit_lands(*args, **kwargs):  # between the key's check and the insert
        with stack.services.sessions.begin() as other:
            other.add(winner)
        return checked(*args, **kwargs)

    monkeypatch.setattr(api.service, "message_files", other_submit_lands)
    answer = submit(client, alice, conversation_id, "once", **{"Idempotency-Key": "race-1"})
    assert answer["id"] == str(winner.id)
    with stack.services.sessions() as session:
        assert session.scalars(select(Job.id).where(Job.idempotency_key == "race-1")).all() == [winner.id]


def test_concurrent_submits_run_in_submit_order(stack, app, alice):
    conversation_id = new_conversation(app.test_client(), alice)
    count = 12

    def post(i: int) -> dict:
        return submit(app.test_client(), alice, conversation_id, f"m{i}")

    with ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(post, range(count)))
    client = app.test_client()
    finished = [wait_job(client, alice, job["id"]) for job in jobs]
    assert all(job["status"] == "succeeded" for job in finished)

    with stack.services.sessions() as session:
        order = session.execute(select(Job.id, Turn.seq).join(Turn, Turn.job_id == Job.id)
                                .where(Job.conversation_id == uuid.UUID(conversation_id))
                                .order_by(Job.position)).all()
    assert [seq for _, seq in order] == list(range(1, count + 1)), "turns follow submit order"
    messages = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"]
    assert len(messages) == 2 * count
    # Each reply saw every earlier turn of the window (its message count only grows until trimming).
    for user, reply in zip(messages[0::2], messages[1::2]):
        assert reply["content"].endswith(f'last: "{user["content"]}"')


def test_long_poll_returns_finished_job(client, alice):
    conversation_id = new_conversation(client, alice)
    job = submit(client, alice, conversation_id, "poll me")
    polled = client.get(f"/v1/jobs/{job['id']}?wait=20", headers=alice).get_json()
    assert polled["status"] == "succeeded"
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice).get_json() == polled


def test_list_rename_and_delete(stack, client, alice):
    ids = [new_conversation(client, alice, name=f"c{i}") for i in range(5)]
    page = client.get("/v1/conversations?limit=2", headers=alice).get_json()
    assert [c["id"] for c in page["data"]] == ids[::-1][:2]
    seen = [c["id"] for c in page["data"]]
    while page["next_cursor"]:
        page = client.get(f"/v1/conversations?limit=2&cursor={page['next_cursor']}", headers=alice).get_json()
        seen += [c["id"] for c in page["data"]]
    assert seen[:5] == ids[::-1]

    renamed = client.patch(f"/v1/conversations/{ids[0]}", json={"name": "renamed"}, headers=alice)
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "renamed"

    say(client, alice, ids[0], "to be deleted")
    with stack.services.sessions() as session:
        prefix = session.get(Conversation, uuid.UUID(ids[0])).s3_file_location
    assert stack.services.store.list_keys(prefix)
    assert client.delete(f"/v1/conversations/{ids[0]}", headers=alice).status_code == 204
    assert client.get(f"/v1/conversations/{ids[0]}", headers=alice).status_code == 404
    assert stack.services.store.list_keys(prefix) == []
    assert stack.services.windows.get(ids[0]) is None
    with stack.services.sessions() as session:
        assert session.scalars(select(Turn).where(Turn.conversation_id == uuid.UUID(ids[0]))).all() == []


def test_readyz_checks_every_backing_service(client):
    body = client.get("/readyz").get_json()
    assert body == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok", "storage": "ok"}}
