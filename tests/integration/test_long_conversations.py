"""Claude per conversation: the model choice, window sizes as the model counted them,
and CONTEXT_STRATEGY=summarize keeping what fell out of the window."""
from __future__ import annotations

import dataclasses
import uuid

import pytest
import requests
from sqlalchemy import select, update

from offline_model.wire import estimate_tokens as model_count
from shared.bootstrap import make_provider
from shared.memory import estimate_tokens
from shared.models import Conversation, Job, Turn, User
from shared.tasks import Dispatcher, make_celery
from shared.users import get_or_create_user, issue_key
from tests.conftest import ALLOWED_TEST_MODELS, TEST_CONTEXT_TOKENS
from tests.integration.helpers import new_conversation, say, submit, wait_job
from tests.integration.test_turns import model_requests
from worker.pipeline import Runtime, run_turn
from worker.summary import INSTRUCTIONS

FACT = "My locker code is 7319-Quartz."


def prompt_tokens(job: dict) -> int:
    usage = job["reply"]["usage"]
    return usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]


@pytest.fixture()
def model_faults(stack):
    def queue(*faults: str) -> None:
        requests.post(f"{stack.model.url}/_control", json={"faults": list(faults)}, timeout=5).raise_for_status()
    yield queue
    queue()


# ------------------------------------------------------------------ model choice


def test_models_lists_the_allowed_choices(stack, client, alice):
    listed = client.get("/v1/models", headers=alice).get_json()
    assert listed["default"] == stack.settings.default_model
    assert set(listed["data"]) == {stack.settings.default_model, *ALLOWED_TEST_MODELS}


def test_a_conversation_talks_to_the_model_it_chose(stack, client, alice):
    chosen, other = ALLOWED_TEST_MODELS
    conversation_id = new_conversation(client, alice, model=chosen)
    assert client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["model"] == chosen
    job = say(client, alice, conversation_id, "Hello")
    assert model_requests(stack)[-1]["model"] == chosen and job["reply"]["model"] == chosen

    changed = client.patch(f"/v1/conversations/{conversation_id}", json={"model": other, "system": "Be terse."},
                           headers=alice)
    assert changed.status_code == 200 and changed.get_json()["model"] == other
    assert changed.get_json()["name"] is None  # fields not sent are left alone
    say(client, alice, conversation_id, "Again")
    assert (model_requests(stack)[-1]["model"], model_requests(stack)[-1]["system"]) == (other, "Be terse.")

    back = client.patch(f"/v1/conversations/{conversation_id}", json={"model": None}, headers=alice).get_json()
    assert back["model"] == stack.settings.default_model and back["system"] == "Be terse."


@pytest.mark.parametrize("method", ["post", "patch"])
def test_a_model_outside_the_list_is_refused(stack, client, alice, method):
    conversation_id = new_conversation(client, alice)
    path = "/v1/conversations" + ("" if method == "post" else f"/{conversation_id}")
    response = getattr(client, method)(path, json={"model": "claude-imaginary-9"}, headers=alice)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request" and ALLOWED_TEST_MODELS[0] in error["message"]
    assert client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["model"] \
        == stack.settings.default_model


def test_a_model_withdrawn_from_the_list_fails_the_turn_with_a_way_out(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    with stack.services.sessions.begin() as session:  # as if ALLOWED_MODELS lost it after the choice
        session.execute(update(Conversation).where(Conversation.conversation_id == uuid.UUID(conversation_id))
                        .values(model="claude-retired-1"))
    job = wait_job(client, alice, submit(client, alice, conversation_id, "Still there?")["id"])
    assert job["status"] == "failed" and job["error"]["type"] == "invalid_request"
    assert "PATCH /v1/conversations/" in job["error"]["message"]
    assert job["request"]["content"] == "Still there?"


# ------------------------------------------------------------------ exact sizes


def test_earlier_messages_are_sized_by_the_models_count(stack, client, alice):
    conversation_id = new_conversation(client, alice, system="Answer in one line.")
    texts = ["First, a short one.", "Then a rather longer message about the tides and the moon."]
    jobs = [say(client, alice, conversation_id, text) for text in texts]
    with stack.services.sessions() as session:
        turns = session.scalars(select(Turn).where(Turn.conversation_id == uuid.UUID(conversation_id))
                                .order_by(Turn.seq)).all()
    # The second prompt grew from the first by the first reply and the new message, as the model counted.
    counted = prompt_tokens(jobs[1]) - prompt_tokens(jobs[0]) - jobs[0]["reply"]["usage"]["output_tokens"]
    assert turns[1].user_tokens == counted != estimate_tokens(texts[1])
    window = stack.services.windows.get(conversation_id)
    assert [m.tokens for m in window.messages][2:] == [counted, jobs[1]["reply"]["usage"]["output_tokens"]]


def test_the_window_fits_the_budget_as_the_model_counts_it(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    for n in range(12):
        say(client, alice, conversation_id, f"Message {n}: " + "a fairly long sentence about nothing much. " * 2)
    for request in model_requests(stack)[-10:]:
        counted = sum(model_count(m["content"]) + 4 for m in request["messages"])  # the offline model's rule
        # Only the newest message is still an estimate (it misses its framing and its predecessor's).
        assert counted <= TEST_CONTEXT_TOKENS + 8, counted


# ------------------------------------------------------------------ summarize


@pytest.fixture()
def summarizing(stack):
    """The pipeline in this process with CONTEXT_STRATEGY=summarize, against the stack's services."""
    settings = stack.settings.model_copy(update={"context_strategy": "summarize", "summary_max_tokens": 2000})
    services = dataclasses.replace(stack.services, settings=settings, provider=make_provider(settings))
    runtime = Runtime(Dispatcher(make_celery(settings, "parley-test")))
    with services.sessions.begin() as session:
        user = get_or_create_user(session, f"summary-{uuid.uuid4().hex[:8]}")
        headers = {"Authorization": f"Bearer {issue_key(session, user)}"}
    user_id = user.id

    class Talk:
        def __init__(self):
            self.headers = headers
            from api.service import create_conversation
            with services.sessions.begin() as session:
                owner = session.get(User, user_id)
                self.conversation_id = create_conversation(session, owner, "long", None).conversation_id

        def say(self, content: str) -> Job:
            from api.service import submit_message
            with services.sessions() as session:
                owner = session.get(User, user_id)
                job, _ = submit_message(services, session, owner, self.conversation_id, content, None)
            assert run_turn(services, str(job.id), runtime).status == "done"
            with services.sessions() as session:
                return session.get(Job, job.id)

        def row(self) -> Conversation:
            with services.sessions() as session:
                return session.get(Conversation, self.conversation_id)

    return Talk


def summary_calls(stack) -> list[dict]:
    return [r for r in model_requests(stack) if r["system"] == INSTRUCTIONS]


def filler(n: int) -> str:
    return f"Tell me about topic {n}: " + "the weather, the sea and the light. " * 3


def test_summary_keeps_what_fell_out_of_the_window(stack, client, summarizing):
    talk = summarizing()
    requests.delete(f"{stack.model.url}/_requests", timeout=5)
    assert talk.say(FACT).status == "succeeded"
    hidden_turns = 0
    for n in range(10):
        job = talk.say(filler(n))
        assert job.status == "succeeded", job.error
        sent = model_requests(stack)[-1]
        if not any(FACT in m["content"] for m in sent["messages"]):
            hidden_turns += 1
            assert FACT in sent["system"], "the fact left the window but is not in the summary"
    assert hidden_turns >= 4

    row = talk.row()
    assert FACT in row.summary and 1 <= row.summary_seq < 11  # durable, in PostgreSQL
    calls = summary_calls(stack)
    assert 1 <= len(calls) < hidden_turns, "refreshed now and then, not on every turn"
    assert all(c["max_tokens"] == 2000 for c in calls)
    # The refresh folds new turns into the old summary rather than starting over.
    assert len(calls) >= 2 and calls[-1]["messages"][0]["content"].startswith("Summary so far:\noffline model")
    # Summary calls count towards the conversation's tokens.
    with stack.services.sessions() as session:
        turn_input = sum(session.scalars(select(Turn.input_tokens + Turn.cache_creation_input_tokens
                                                + Turn.cache_read_input_tokens)
                                         .where(Turn.conversation_id == talk.conversation_id)))
    assert row.input_tokens + row.cache_creation_input_tokens + row.cache_read_input_tokens > turn_input
    # The owner can read what the model is told about the older messages.
    shown = client.get(f"/v1/conversations/{talk.conversation_id}", headers=talk.headers).get_json()["summary"]
    assert shown == {"text": row.summary, "through_message": 2 * row.summary_seq}


def test_a_failed_summary_does_not_fail_the_turn(stack, summarizing, model_faults):
    talk = summarizing()
    talk.say(FACT)
    requests.delete(f"{stack.model.url}/_requests", timeout=5)
    for n in range(10):  # until a refresh is due: its one call fails (no retry), the reply goes on
        model_faults("server_error")  # taken by the reply when no refresh is due: retried, so it succeeds
        job = talk.say(filler(n))
        assert job.status == "succeeded", job.error
        if summary_calls(stack):
            break
    assert len(summary_calls(stack)) == 1, "no summary was ever due"
    assert talk.row().summary is None
    model_faults()
    assert talk.say(filler(99)).status == "succeeded"
    assert FACT in talk.row().summary  # the next turn caught up
