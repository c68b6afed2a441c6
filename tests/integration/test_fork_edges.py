"""Forks at their edges: a seq that cannot be used (400), someone else's conversation
(404), a turn still running (409), never between a tool call and its result, the
attachments of a message sent again, and turns stored before rows kept their entries."""
from __future__ import annotations

import uuid

import pytest
import requests
from sqlalchemy import select

from bench import seed
from shared.models import Turn
from shared.users import get_or_create_user, issue_key
from tests.integration.helpers import new_conversation, say, submit, wait_job
from tests.integration.sse import SseReader
from tests.integration.test_forks import conversation, log_objects, post, prefix_of, talk, wait_copied


@pytest.fixture()
def talked(client, alice):
    return talk(client, alice)


def test_a_seq_that_cannot_be_used_is_a_clear_400(client, alice, talked):
    conversation_id, _ = talked
    cases = [("fork", {"json": {"at_seq": 3}}, "at_seq: 3 is a user message"),
             ("fork", {"json": {"at_seq": 8}}, "at_seq: 8 is beyond the conversation's last message (6)"),
             ("fork", {"json": {"at_seq": -2}}, "at_seq"),
             ("fork", {"json": {}}, "at_seq"),
             ("messages/4/edit", {"json": {"content": "x"}}, "seq: 4 is a reply"),
             ("messages/7/edit", {"json": {"content": "x"}}, "seq: 7 is beyond"),
             ("messages/1/edit", {"json": {"content": "  "}}, "content"),
             ("messages/0/regenerate", {}, "seq"),
             ("messages/first/regenerate", {}, "seq"),
             ("messages/9/regenerate", {}, "seq: 9 is beyond")]
    before = conversation(client, alice, conversation_id)
    for path, kwargs, message in cases:
        error = post(client, alice, f"/v1/conversations/{conversation_id}/{path}", 400, **kwargs)["error"]
        assert error["type"] == "invalid_request" and message in error["message"], (path, error)
    assert conversation(client, alice, conversation_id) == before
    assert client.get(f"/v1/conversations/{conversation_id}/forks", headers=alice).get_json()["data"] == []


def test_another_users_conversation_is_404(client, bob, talked):
    conversation_id, _ = talked
    for path, body in (("fork", {"at_seq": 2}), ("messages/1/edit", {"content": "mine now"}),
                       ("messages/1/regenerate", {})):
        error = post(client, bob, f"/v1/conversations/{conversation_id}/{path}", 404, json=body)["error"]
        assert error["type"] == "not_found"
    assert client.get(f"/v1/conversations/{conversation_id}/forks", headers=bob).status_code == 404


def test_a_turn_still_running_is_409_and_the_committed_ones_fork(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    first = say(client, alice, conversation_id, "committed")
    requests.post(f"{stack.model.url}/_control", json={"chunk_chars": 2, "stream_delay_ms": 1500},
                  timeout=5).raise_for_status()
    try:
        job = submit(client, alice, conversation_id, "still running")
        events = SseReader(client.get(f"/v1/jobs/{job['id']}/events", headers=alice, buffered=False))
        while events.next_event().type != "message.delta":  # the model is answering: the turn runs
            pass
        for path, body in (("fork", {"at_seq": 4}), ("messages/3/edit", {"content": "x"}),
                           ("messages/4/regenerate", {})):
            error = post(client, alice, f"/v1/conversations/{conversation_id}/{path}", 409, json=body)["error"]
            assert error["type"] == "turn_not_committed", error
        fork = post(client, alice, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 2})
        events.close()
    finally:
        requests.post(f"{stack.model.url}/_control", json={"chunk_chars": 8, "stream_delay_ms": 0},
                      timeout=5).raise_for_status()
    assert wait_job(client, alice, job["id"])["status"] == "succeeded"
    assert [m["job_id"] for m in conversation(client, alice, fork["id"])["messages"]] == [first["id"]] * 2


def test_turns_written_before_rows_kept_entries_are_forked_too(stack, client):
    """Older rows without their entry's copy: read from the log once, then copied."""
    with stack.services.sessions.begin() as session:
        user = get_or_create_user(session, f"forks-{uuid.uuid4().hex[:8]}")
        headers = {"Authorization": f"Bearer {issue_key(session, user)}"}
    conversation_id = seed.history(stack.services, user, 20, 30, copies=False)
    fork = post(client, headers, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 16})
    assert client.delete(f"/v1/conversations/{conversation_id}", headers=headers).status_code == 204
    wait_copied(stack, fork["id"])
    messages = conversation(client, headers, fork["id"])["messages"]
    assert len(messages) == 16 and messages[-1]["content"].startswith("turn 8 ")
    with stack.services.sessions() as session:
        copied = session.scalars(select(Turn.entry).where(Turn.conversation_id == uuid.UUID(fork["id"]))
                                 .order_by(Turn.seq)).all()
    assert [entry["seq"] for entry in copied] == list(range(1, 9))
    assert len(log_objects(stack, prefix_of(stack, fork["id"]))) == 8


def test_a_fork_never_ends_between_a_tool_call_and_its_result(stack, client, alice):
    from tests.integration.test_tools import CLOCK, answer, calling, ended
    conversation_id = new_conversation(client, alice, tools=[CLOCK])
    called = calling(client, alice, conversation_id, 'What time is it? call tool clock {"tz": "UTC"}')
    (call,) = called["required_action"]["tool_calls"]
    continuation = answer(client, alice, called["id"], [{"tool_call_id": call["id"], "content": "09:00"}])
    assert ended(client, alice, continuation.get_json()["job"]["id"])["status"] == "succeeded"
    before = conversation(client, alice, conversation_id)
    # Turn 1's reply calls the clock; message 3 is its result, not the user's.
    cases = [("fork", {"at_seq": 2}, "at_seq: reply 2 calls tools that message 3 answers"),
             ("messages/3/edit", {"content": "no tools"}, "seq: message 3 holds the results of the tools reply 2"),
             ("messages/4/regenerate", {}, "seq: message 3 holds the results")]
    for path, body, message in cases:
        error = post(client, alice, f"/v1/conversations/{conversation_id}/{path}", 400, json=body)["error"]
        assert message in error["message"], error
    fork = post(client, alice, f"/v1/conversations/{conversation_id}/fork", 201, json={"at_seq": 4})
    assert fork["tools"] == [CLOCK]
    # The fork sends the call and its result back; the offline model refuses a call without its result.
    assert say(client, alice, fork["id"], "Thanks")["status"] == "succeeded"
    again = post(client, alice, f"/v1/conversations/{conversation_id}/messages/2/regenerate", 202)
    assert ended(client, alice, again["job"]["id"])["status"] == "requires_action"
    assert conversation(client, alice, conversation_id) == before


def test_a_regenerated_message_keeps_its_attachments_and_an_edit_takes_new_ones(client, alice):
    from tests.integration.test_attachments import send, uploaded
    from tests.media import png
    conversation_id = new_conversation(client, alice)
    picture, other = uploaded(client, alice, "dot.png", png(8, 8)), uploaded(client, alice, "red.png", png(9, 9))
    first = send(client, alice, conversation_id, "what is this?", [picture["id"]])
    assert first.status_code == 202, first.get_json()
    assert wait_job(client, alice, first.get_json()["job"]["id"])["status"] == "succeeded"
    key = {"Idempotency-Key": f"regenerate-{uuid.uuid4()}"}
    again = post(client, {**alice, **key}, f"/v1/conversations/{conversation_id}/messages/2/regenerate", 202)
    assert again["job"]["request"] == {"content": "what is this?", "attachments": [picture["id"]]}
    replay = post(client, {**alice, **key}, f"/v1/conversations/{conversation_id}/messages/2/regenerate", 202)
    assert (replay["conversation"]["id"], replay["job"]["id"]) == (again["conversation"]["id"], again["job"]["id"])
    assert wait_job(client, alice, again["job"]["id"])["status"] == "succeeded"
    edited = post(client, alice, f"/v1/conversations/{conversation_id}/messages/1/edit", 202,
                  json={"content": "and this?", "attachments": [other["id"]]})
    assert edited["job"]["request"] == {"content": "and this?", "attachments": [other["id"]]}
    assert wait_job(client, alice, edited["job"]["id"])["status"] == "succeeded"


def test_a_forks_window_keeps_its_files_after_the_parent_is_deleted(stack, client, alice):
    from tests.integration.test_attachments import answered, uploaded
    from tests.media import png
    parent = new_conversation(client, alice)
    picture = uploaded(client, alice, "dot.png", png(8, 8))
    answered(client, alice, parent, "what is this?", [picture["id"]])
    say(client, alice, parent, "and then?")
    fork = post(client, alice, f"/v1/conversations/{parent}/fork", 201, json={"at_seq": 2})
    assert client.delete(f"/v1/conversations/{parent}", headers=alice).status_code == 204
    refused = client.delete(f"/v1/files/{picture['id']}", headers=alice)
    assert refused.status_code == 409 and fork["id"] in refused.get_json()["error"]["message"]
    assert client.delete(f"/v1/conversations/{fork['id']}", headers=alice).status_code == 204
    assert client.delete(f"/v1/files/{picture['id']}", headers=alice).status_code == 204
