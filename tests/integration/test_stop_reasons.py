"""Every answer Claude can give ends as documented (shared/replies.py), through the real
SDK against the offline model, which enforces the Messages API's request rules (an empty
or whitespace-only text block is a 400) and refuses again while a refused message stays
in the context, as the real API does. After each, the next turn must succeed, and what
was streamed must be what was stored."""
from __future__ import annotations

import uuid

import pytest
import requests

from offline_model import OfflineModelServer
from offline_model.wire import EMPTY_TRIGGER, REFUSAL_TRIGGER, STOP_REASON_TRIGGER, WINDOW_TRIGGER
from shared.model import BedrockProvider, ModelRequest, RetryingProvider, RetryPolicy
from shared.replies import reply_outcome
from tests.integration.helpers import new_conversation, say
from tests.integration.sse import SseReader


def stream_turn(client, headers, conversation_id: str, content: str) -> tuple[str, dict]:
    """Submit and stream one message; the streamed text and the final job."""
    response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content},
                           headers={**headers, "Accept": "text/event-stream"}, buffered=False)
    events = SseReader(response).rest()
    assert events[-1].type in ("job.succeeded", "job.failed"), [e.type for e in events]
    return "".join(e.data["text"] for e in events if e.type == "message.delta"), events[-1].data


def history(client, headers, conversation_id: str) -> list[dict]:
    return client.get(f"/v1/conversations/{conversation_id}", headers=headers).get_json()["messages"]


@pytest.mark.parametrize("content", ["", " ", " \n\t", "\u2003\u00a0"])
def test_a_message_without_text_is_refused_at_submit_and_nothing_is_queued(client, alice, content):
    conversation_id = new_conversation(client, alice)
    response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content},
                           headers=alice)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["type"] == "invalid_request" and error["message"].startswith("content:")
    assert client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["message_count"] == 0
    seed = client.post("/chat", json={"user_input": content, "conversation_id": conversation_id}, headers=alice)
    assert seed.status_code == 400 and seed.get_json()["error"]["message"].startswith("user_input:")


def test_an_empty_reply_is_never_stored_and_the_conversation_goes_on(client, alice):
    conversation_id = new_conversation(client, alice)
    say(client, alice, conversation_id, "Hello")
    streamed, job = stream_turn(client, alice, conversation_id, f"Say nothing. {EMPTY_TRIGGER}")
    assert streamed == "" and job["status"] == "failed" and job["error"]["type"] == "empty_reply"
    assert "nothing was stored" in job["error"]["message"]
    assert [m["content"] for m in history(client, alice, conversation_id)] == \
        ["Hello", 'offline model: received 1 messages; last: "Hello"']
    # The offline model answers 400 to an empty text block: this turn succeeding proves none was sent.
    assert say(client, alice, conversation_id, "Still there?")["reply"]["content"].startswith(
        "offline model: received 3 messages")


def test_a_refusal_is_shown_kept_in_the_history_and_never_sent_again(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    say(client, alice, conversation_id, "Hello")
    streamed, job = stream_turn(client, alice, conversation_id, f"Do the bad thing. {REFUSAL_TRIGGER}")
    reply = job["reply"]
    assert job["status"] == "succeeded" and reply["stop_reason"] == "refusal" and reply["outcome"] == "refused"
    assert reply["stop_details"]["category"] == "cyber" and reply["stop_details"]["explanation"]
    assert "not sent to Claude again" in reply["notice"]
    assert reply["usage"]["output_tokens"] > 0  # billed up to the refusal, and counted
    assert streamed == reply["content"] == "Hello.."
    shown = history(client, alice, conversation_id)
    assert [(m["role"], m["outcome"]) for m in shown] == \
        [("user", "complete"), ("assistant", "complete"), ("user", "refused"), ("assistant", "refused")]

    # The offline model refuses while the trigger is anywhere in the context (as the docs say the
    # real one does), so a harmless next question answered proves the refused turn was left out.
    after = say(client, alice, conversation_id, "What is the capital of France?")["reply"]
    assert after["outcome"] == "complete" and after["content"].startswith("offline model: received 3 messages")
    stack.services.windows.delete(uuid.UUID(conversation_id))  # Redis lost the window: rebuilt from the log
    rebuilt = say(client, alice, conversation_id, "And of Spain?")["reply"]
    assert rebuilt["outcome"] == "complete" and rebuilt["content"].startswith("offline model: received 5 messages")


def test_a_reply_cut_by_the_context_window_is_marked_truncated_and_the_user_can_ask_for_the_rest(client, alice):
    conversation_id = new_conversation(client, alice)
    streamed, job = stream_turn(client, alice, conversation_id, f"Tell me everything. {WINDOW_TRIGGER}")
    reply = job["reply"]
    assert (reply["stop_reason"], reply["outcome"]) == ("model_context_window_exceeded", "truncated")
    assert streamed == reply["content"] == history(client, alice, conversation_id)[-1]["content"]
    rest = say(client, alice, conversation_id, "Please continue.")["reply"]  # works without assistant prefill
    assert rest["outcome"] == "complete" and rest["content"].startswith("offline model: received 3 messages")


def test_an_unknown_stop_reason_is_stored_and_shown_as_it_came(client, alice):
    conversation_id = new_conversation(client, alice)
    job = say(client, alice, conversation_id, f"Surprise me. {STOP_REASON_TRIGGER}brand_new_reason")
    assert (job["reply"]["stop_reason"], job["reply"]["outcome"]) == ("brand_new_reason", "complete")
    assert say(client, alice, conversation_id, "Next")["status"] == "succeeded"


def test_the_offline_model_enforces_the_request_rules_with_the_apis_words(model_server):
    base = {"model": "claude-sonnet-5-5", "max_tokens": 16}
    cases = [
        ([{"role": "user", "content": ""}], "text content blocks must be non-empty"),
        ([{"role": "user", "content": [{"type": "text", "text": " \n"}]}], "must contain non-whitespace text"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""},
          {"role": "user", "content": "again"}], "messages.1: text content blocks must be non-empty"),
        ([{"role": "user", "content": "hi"},
          {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "clock", "input": {}}]},
          {"role": "user", "content": "what time is it?"}], "`tool_use` ids were found without `tool_result`"),
        ([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "12:00"}]}],
         "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9"),
    ]
    for messages, words in cases:
        answer = requests.post(f"{model_server.url}/v1/messages", json={**base, "messages": messages},
                               headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}, timeout=5)
        assert answer.status_code == 400 and words in answer.json()["error"]["message"]


@pytest.fixture(scope="module")
def model_server():
    """An offline model of these tests' own: the stack's records only what Parley sent it,
    which other tests read back as Messages API text."""
    with OfflineModelServer() as server:
        yield server


def test_bedrock_reports_a_refusal_as_content_filtered_which_is_refused_too(model_server, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    provider = RetryingProvider(BedrockProvider("us-east-1", model_server.url, timeout=5), RetryPolicy(max_retries=0))
    reply = provider.complete(ModelRequest(None, [{"role": "user", "content": f"x {REFUSAL_TRIGGER}"}],
                                           "global.anthropic.claude-sonnet-5-5", 64))
    assert reply.stop_reason == "content_filtered" and reply_outcome(reply.stop_reason, reply.text) == "refused"
    empty = provider.complete(ModelRequest(None, [{"role": "user", "content": EMPTY_TRIGGER}],
                                           "global.anthropic.claude-sonnet-5-5", 64))
    assert reply_outcome(empty.stop_reason, empty.text) == "empty"
