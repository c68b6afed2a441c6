"""Forks, edit and regenerate through the real stack: what a fork holds, its own log
objects, deleting either side, the original left byte-identical, what reached the model,
idempotency and the consistency checker (the edges: test_fork_edges.py)."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

from devstack.faultstack import wait_until
from shared.models import Conversation
from tests.integration.helpers import WAIT, new_conversation, say, wait_job
from worker.check import check

QUESTIONS = ("first question", "second question", "third question")


def talk(client, headers) -> tuple[str, list[dict]]:
    """A conversation of three real turns (worker, offline model, log) and their jobs."""
    conversation_id = new_conversation(client, headers, name="original", system="Be brief.")
    return conversation_id, [say(client, headers, conversation_id, question) for question in QUESTIONS]


@pytest.fixture()
def talked(client, alice):
    return talk(client, alice)


def conversation(client, headers, conversation_id: str, status: int = 200) -> dict:
    response = client.get(f"/v1/conversations/{conversation_id}", headers=headers)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def post(client, headers, path: str, status: int, **kwargs) -> dict:
    response = client.post(path, headers=headers, **kwargs)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def prefix_of(stack, conversation_id: str) -> str:
    with stack.services.sessions() as session:
        return session.get(Conversation, uuid.UUID(conversation_id)).s3_file_location


def log_objects(stack, prefix: str) -> dict[str, bytes]:
    """The conversation's log as stored: every object's key and exact bytes."""
    store = stack.services.store
    return {key: store.client.get_object(Bucket=store.bucket, Key=store.prefix + key)["Body"].read()
            for key in store.list_keys(prefix)}


def wait_copied(stack, conversation_id: str) -> None:
    """Until the worker has written the fork's log objects (it clears log_copy_pending)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with stack.services.sessions() as session:
            if not session.get(Conversation, uuid.UUID(conversation_id)).log_copy_pending:
                return
        time.sleep(0.05)
    raise AssertionError(f"the log of fork {conversation_id} was not copied within {WAIT}s")


def findings_about(stack, *conversation_ids: str) -> list[str]:
    report = check(stack.services, grace=3600)
    return [f.line() for f in report.findings if any(c in f.subject or c in f.detail for c in conversation_ids)]


def _text(content) -> str:
    return content if isinstance(content, str) else "".join(
        block.get("text", "") for block in content if isinstance(block, dict))


def sent_with_last(stack, content: str) -> list[dict]:
    """The messages (as text) of the one model request whose newest message is `content`."""
    recorded = requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"]
    matching = [r["messages"] for r in recorded if _text(r["messages"][-1]["content"]) == content]
    assert len(matching) == 1, f"{len(matching)} requests end with {content!r}"
    return [{"role": m["role"], "content": _text(m["content"])} for m in matching[0]]


def test_a_fork_holds_the_turns_up_to_at_seq_and_is_listed(stack, client, alice, talked):
    conversation_id, jobs = talked
    original = conversation(client, alice, conversation_id)
    fork = post(client, alice, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 4})
    assert fork["forked_from"] == {"conversation_id": conversation_id, "seq": 4}
    assert (fork["name"], fork["system"], fork["model"]) == ("original", "Be brief.", original["model"])
    assert fork["message_count"] == 4 and fork["id"] != conversation_id
    # Nothing was spent on the fork itself.
    assert (fork["input_tokens"], fork["output_tokens"], fork["cost_usd"]) == (0, 0, 0.0)
    assert conversation(client, alice, fork["id"])["messages"] == original["messages"][:4]
    assert [m["job_id"] for m in original["messages"][:4:2]] == [jobs[0]["id"], jobs[1]["id"]]
    named = post(client, alice, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 0, "name": "blank"})
    assert (named["name"], named["message_count"], conversation(client, alice, named["id"])["messages"]) == (
        "blank", 0, [])
    listed = client.get(f"/v1/conversations/{conversation_id}/forks", headers=alice).get_json()
    assert [c["id"] for c in listed["data"]] == [named["id"], fork["id"]] and listed["next_cursor"] is None
    first = client.get(f"/v1/conversations/{conversation_id}/forks?limit=1", headers=alice).get_json()
    rest = client.get(f"/v1/conversations/{conversation_id}/forks?limit=1&cursor={first['next_cursor']}",
                      headers=alice).get_json()
    assert [c["id"] for c in first["data"] + rest["data"]] == [named["id"], fork["id"]]
    assert client.get(f"/v1/conversations/{fork['id']}/forks", headers=alice).get_json()["data"] == []
    assert conversation(client, alice, conversation_id) == original

    # The fork's own log: the two turns' entries under its own prefix, as the original's are.
    wait_copied(stack, fork["id"])
    fork_log, original_log = log_objects(stack, prefix_of(stack, fork["id"])), log_objects(
        stack, prefix_of(stack, conversation_id))
    assert [key.rsplit("/", 1)[1] for key in fork_log] == ["0000000001.json", "0000000002.json"]
    assert [stack.services.store.get(key) for key in fork_log] == [
        stack.services.store.get(key) for key in list(original_log)[:2]]
    assert findings_about(stack, conversation_id, fork["id"], named["id"]) == []


def test_the_fork_goes_on_from_its_own_turns(stack, client, alice, talked):
    conversation_id, jobs = talked
    fork = post(client, alice, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 2})
    reply = say(client, alice, fork["id"], "a different second question")
    assert sent_with_last(stack, "a different second question") == [
        {"role": "user", "content": QUESTIONS[0]}, {"role": "assistant", "content": jobs[0]["reply"]["content"]},
        {"role": "user", "content": "a different second question"}]
    messages = conversation(client, alice, fork["id"])["messages"]
    assert [(m["seq"], m["content"]) for m in messages[2:]] == [
        (3, "a different second question"), (4, reply["reply"]["content"])]
    wait_copied(stack, fork["id"])
    assert len(log_objects(stack, prefix_of(stack, fork["id"]))) == 2
    assert findings_about(stack, conversation_id, fork["id"]) == []


def test_a_fork_survives_its_parents_deletion(stack, client, alice, talked):
    conversation_id, jobs = talked
    fork = post(client, alice, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 6})
    # Deleted at once, maybe before the worker has written the fork's log: it is written
    # from the fork's own rows, not from the parent's objects.
    assert client.delete(f"/v1/conversations/{conversation_id}", headers=alice).status_code == 204
    conversation(client, alice, conversation_id, 404)
    wait_copied(stack, fork["id"])
    fork_view = conversation(client, alice, fork["id"])
    assert [m["content"] for m in fork_view["messages"][::2]] == list(QUESTIONS)
    assert [m["content"] for m in fork_view["messages"][1::2]] == [job["reply"]["content"] for job in jobs]
    assert fork_view["forked_from"] == {"conversation_id": conversation_id, "seq": 6}
    entries = [stack.services.store.get(key) for key in log_objects(stack, prefix_of(stack, fork["id"]))]
    assert [e["messages"][0]["content"] for e in entries] == list(QUESTIONS)
    # The window is rebuilt from the fork's own turns: all three reach the model.
    question = f"is fork {fork['id']} still there?"  # the model's request log is the whole session's
    say(client, alice, fork["id"], question)
    assert [m["content"] for m in sent_with_last(stack, question)[::2]] == [*QUESTIONS, question]
    # Its turns' jobs went with the parent: not a finding.
    assert findings_about(stack, conversation_id, fork["id"]) == []


def test_a_parent_survives_its_forks_deletion(stack, client, alice, talked):
    conversation_id, _ = talked
    original, original_log = conversation(client, alice, conversation_id), log_objects(
        stack, prefix_of(stack, conversation_id))
    fork = post(client, alice, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 6})
    fork_prefix = prefix_of(stack, fork["id"])
    assert client.delete(f"/v1/conversations/{fork['id']}", headers=alice).status_code == 204
    assert conversation(client, alice, conversation_id) == original
    assert log_objects(stack, prefix_of(stack, conversation_id)) == original_log
    assert client.get(f"/v1/conversations/{conversation_id}/forks", headers=alice).get_json()["data"] == []
    # Whether the worker's copy ran before or after the deletion, nothing of the fork is left.
    from worker.forks import copy_fork_log
    assert copy_fork_log(stack.services, fork["id"]) == 0
    # A worker's copy still writing when the fork went deletes what it wrote when it ends.
    wait_until(lambda: stack.services.store.list_keys(fork_prefix) == [], WAIT, what="the fork's log to be gone")
    say(client, alice, conversation_id, "and on")
    assert findings_about(stack, conversation_id, fork["id"]) == []


def test_edit_forks_before_the_message_and_leaves_the_original_byte_identical(stack, client, alice, talked):
    conversation_id, jobs = talked
    before, before_log = conversation(client, alice, conversation_id), log_objects(
        stack, prefix_of(stack, conversation_id))
    answer = post(client, alice, f"/v1/conversations/{conversation_id}/messages/3/edit", 202,
                  json={"content": "the second question, edited"})
    fork, job = answer["conversation"], answer["job"]
    assert fork["forked_from"] == {"conversation_id": conversation_id, "seq": 2}
    assert job["conversation_id"] == fork["id"] and job["request"]["content"] == "the second question, edited"
    done = wait_job(client, alice, job["id"])
    assert done["status"] == "succeeded"
    # The model saw turn 1, then the edited message: nothing of turns 2 and 3.
    assert sent_with_last(stack, "the second question, edited") == [
        {"role": "user", "content": QUESTIONS[0]}, {"role": "assistant", "content": jobs[0]["reply"]["content"]},
        {"role": "user", "content": "the second question, edited"}]
    assert [(m["seq"], m["content"]) for m in conversation(client, alice, fork["id"])["messages"]] == [
        (1, QUESTIONS[0]), (2, jobs[0]["reply"]["content"]), (3, "the second question, edited"),
        (4, done["reply"]["content"])]
    assert conversation(client, alice, conversation_id) == before
    assert log_objects(stack, prefix_of(stack, conversation_id)) == before_log
    listed = client.get(f"/v1/conversations/{conversation_id}/forks", headers=alice).get_json()["data"]
    assert [c["id"] for c in listed] == [fork["id"]]


@pytest.mark.parametrize("seq", [3, 4])  # the turn's user message, or its reply
def test_regenerate_resubmits_the_turns_message_in_a_fork(stack, client, alice, talked, seq):
    conversation_id, jobs = talked
    before, before_log = conversation(client, alice, conversation_id), log_objects(
        stack, prefix_of(stack, conversation_id))
    requests.delete(f"{stack.model.url}/_requests", timeout=5).raise_for_status()
    answer = post(client, alice, f"/v1/conversations/{conversation_id}/messages/{seq}/regenerate", 202,
                  json={"name": "again"})
    fork, job = answer["conversation"], answer["job"]
    assert (fork["forked_from"], fork["name"]) == ({"conversation_id": conversation_id, "seq": 2}, "again")
    done = wait_job(client, alice, job["id"])
    assert done["status"] == "succeeded" and job["request"]["content"] == QUESTIONS[1]
    assert sent_with_last(stack, QUESTIONS[1]) == [
        {"role": "user", "content": QUESTIONS[0]}, {"role": "assistant", "content": jobs[0]["reply"]["content"]},
        {"role": "user", "content": QUESTIONS[1]}]
    messages = conversation(client, alice, fork["id"])["messages"]
    assert [m["content"] for m in messages] == [QUESTIONS[0], jobs[0]["reply"]["content"], QUESTIONS[1],
                                                done["reply"]["content"]]
    assert messages[3]["job_id"] == job["id"] != jobs[1]["id"]
    assert conversation(client, alice, conversation_id) == before
    assert log_objects(stack, prefix_of(stack, conversation_id)) == before_log


def test_regenerate_without_a_body(client, alice, talked):
    conversation_id, _ = talked
    answer = post(client, alice, f"/v1/conversations/{conversation_id}/messages/1/regenerate", 202)
    assert answer["conversation"]["message_count"] == 0 and answer["job"]["request"]["content"] == QUESTIONS[0]
    assert wait_job(client, alice, answer["job"]["id"])["status"] == "succeeded"


def test_an_edit_sent_twice_with_one_idempotency_key_makes_one_fork(client, alice, talked):
    conversation_id, _ = talked
    path = f"/v1/conversations/{conversation_id}/messages/5/edit"
    key = {"Idempotency-Key": f"edit-{uuid.uuid4()}"}
    first = post(client, {**alice, **key}, path, 202, json={"content": "third, edited"})
    again = post(client, {**alice, **key}, path, 202, json={"content": "third, edited"})
    assert (again["conversation"]["id"], again["job"]["id"]) == (first["conversation"]["id"], first["job"]["id"])
    other = post(client, {**alice, **key}, path, 409, json={"content": "something else"})
    assert other["error"]["type"] == "idempotency_key_reused"
    wait_job(client, alice, first["job"]["id"])
    assert len(client.get(f"/v1/conversations/{conversation_id}/forks", headers=alice).get_json()["data"]) == 1
