"""Extended thinking end to end: set per conversation (or per message), checked against the
model's capabilities when set, streamed as thinking.delta before the reply's text, kept in
the log and the window with its signature, and sent back exactly on the next turn (the
offline model refuses a thinking block whose signature does not verify, as the API does)."""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from offline_model.thinking import REDACTED_TRIGGER
from shared.log_entry import LogEntry
from shared.models import Turn
from tests.integration.helpers import new_conversation, say, wait_job
from tests.integration.sse import parse
from worker.check import check

ADAPTIVE = {"type": "adaptive", "effort": "high"}


def model_requests(stack, marker: str) -> list[dict]:
    """The Messages API requests whose newest message holds `marker`."""
    recorded = requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"]
    return [r for r in recorded if isinstance(r, dict) and marker in json.dumps(r.get("messages", [])[-1:])]


def stream_turn(client, headers, conversation_id: str, content: str, **body) -> list:
    response = client.post(f"/v1/conversations/{conversation_id}/messages", json={"content": content, **body},
                           headers={**headers, "Accept": "text/event-stream"})
    assert response.status_code == 200, response.get_data(as_text=True)
    events, _ = parse(response.get_data(as_text=True))
    return events


def test_thinking_streams_first_is_stored_signed_and_goes_back_exactly(client, make_user, stack):
    alice = make_user()
    conversation_id = new_conversation(client, alice, thinking=ADAPTIVE)
    marker = uuid.uuid4().hex
    events = stream_turn(client, alice, conversation_id, f"think about {marker}")
    kinds = [event.type for event in events]
    assert "thinking.delta" in kinds and "message.delta" in kinds
    assert kinds.index("thinking.delta") < kinds.index("message.delta")
    assert max(i for i, k in enumerate(kinds) if k == "thinking.delta") < kinds.index("message.delta")
    thought = "".join(event.data["thinking"] for event in events if event.type == "thinking.delta")
    assert marker in thought

    job = events[-1].data
    assert job["status"] == "succeeded", job
    thinking_block, text_block = job["reply"]["blocks"]
    assert thinking_block["type"] == "thinking" and thinking_block["thinking"] == thought
    assert thinking_block["signature"]
    assert text_block == {"type": "text", "text": job["reply"]["content"]}
    assert job["reply"]["usage"]["thinking_tokens"] > 0
    assert job["reply"]["usage"]["output_tokens"] > job["reply"]["usage"]["thinking_tokens"]

    (sent,) = model_requests(stack, marker)
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "high"}
    assert sent["max_tokens"] > stack.settings.max_tokens  # the answer keeps its MAX_TOKENS beside the thinking

    # The log keeps the blocks, signature and all.
    with stack.services.sessions() as session:
        row = session.query(Turn).filter_by(job_id=uuid.UUID(job["id"])).one()
    entry = LogEntry.from_dict(stack.services.store.get(row.log_key))
    assert entry.messages[1].content == job["reply"]["blocks"]

    # The next turn sends them back unchanged; the offline model checks the signature.
    second = uuid.uuid4().hex
    say(client, alice, conversation_id, f"and {second}")
    (again,) = model_requests(stack, second)
    assert again["messages"][1]["content"] == job["reply"]["blocks"]

    plain = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()
    assert plain["thinking"] == ADAPTIVE
    assert [m["content"] for m in plain["messages"] if m["role"] == "assistant"][0] == job["reply"]["content"]
    full = client.get(f"/v1/conversations/{conversation_id}?include=thinking", headers=alice).get_json()
    assert full["messages"][1]["content"] == job["reply"]["blocks"]
    page = client.get(f"/v1/conversations/{conversation_id}/messages?order=asc&include=thinking",
                      headers=alice).get_json()
    assert page["data"][1]["content"] == job["reply"]["blocks"] and page["data"][0]["content"] == f"think about {marker}"
    bad = client.get(f"/v1/conversations/{conversation_id}?include=everything", headers=alice)
    assert bad.status_code == 400
    # The checker reads the log's blocks and the job's text as the same reply.
    findings = [f.line() for f in check(stack.services).findings if conversation_id in f.subject]
    assert findings == []


def test_a_turn_without_thinking_keeps_plain_text(client, make_user, stack):
    alice = make_user()
    conversation_id = new_conversation(client, alice)
    marker = uuid.uuid4().hex
    job = say(client, alice, conversation_id, marker)
    assert "blocks" not in job["reply"] and "thinking_tokens" not in job["reply"]["usage"]
    (sent,) = model_requests(stack, marker)
    assert "thinking" not in sent and "output_config" not in sent and sent["max_tokens"] == stack.settings.max_tokens
    body = client.get(f"/v1/conversations/{conversation_id}?include=thinking", headers=alice).get_json()
    assert body["messages"][1]["content"] == job["reply"]["content"] and body["thinking"] is None


def test_one_message_overrides_the_conversation(client, make_user, stack):
    alice = make_user()
    conversation_id = new_conversation(client, alice)
    marker = uuid.uuid4().hex
    response = client.post(f"/v1/conversations/{conversation_id}/messages",
                           json={"content": marker, "thinking": {"type": "adaptive"}}, headers=alice)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["job"]["request"]["thinking"] == {"type": "adaptive"}
    job = wait_job(client, alice, response.get_json()["job"]["id"])
    assert job["status"] == "succeeded" and job["reply"]["blocks"][0]["type"] == "thinking"
    (sent,) = model_requests(stack, marker)
    assert sent["thinking"] == {"type": "adaptive"} and "output_config" not in sent

    # ... and off for one message of a thinking conversation.
    thinking_id = new_conversation(client, alice, thinking=ADAPTIVE)
    quiet = uuid.uuid4().hex
    response = client.post(f"/v1/conversations/{thinking_id}/messages",
                           json={"content": quiet, "thinking": {"type": "disabled"}}, headers=alice)
    job = wait_job(client, alice, response.get_json()["job"]["id"])
    assert job["status"] == "succeeded" and "blocks" not in job["reply"]
    (sent,) = model_requests(stack, quiet)
    assert "thinking" not in sent
    assert client.get(f"/v1/conversations/{thinking_id}", headers=alice).get_json()["thinking"] == ADAPTIVE


@pytest.mark.parametrize("body, says", [
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "does not support thinking type 'enabled'"),
    ({"model": "claude-haiku-4-5", "thinking": {"type": "adaptive"}}, "does not support thinking type 'adaptive'"),
    ({"model": "claude-haiku-4-5", "thinking": {"type": "enabled", "budget_tokens": 2048, "effort": "low"}},
     "does not support effort 'low'"),
    ({"model": "claude-haiku-4-5", "thinking": {"type": "enabled", "budget_tokens": 63_500}}, "at most 62976"),
    ({"model": "claude-haiku-4-5", "thinking": {"type": "enabled"}}, "budget_tokens"),
    ({"thinking": {"type": "adaptive", "budget_tokens": 2048}}, "only with type enabled"),
    ({"thinking": {"type": "enabled", "budget_tokens": 100}}, "budget_tokens"),
    ({"thinking": {"type": "sometimes"}}, "thinking"),
])
def test_a_setting_the_model_does_not_take_is_refused_at_create(client, make_user, body, says):
    alice = make_user()
    response = client.post("/v1/conversations", json=body, headers=alice)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["type"] == "invalid_request"
    assert says in response.get_json()["error"]["message"]
    assert client.get("/v1/conversations", headers=alice).get_json()["data"] == []  # nothing was made


def test_patch_is_checked_against_the_model_it_leaves(client, make_user):
    alice = make_user()
    budget = {"type": "enabled", "budget_tokens": 2048}
    conversation_id = new_conversation(client, alice, model="claude-haiku-4-5", thinking=budget)
    path = f"/v1/conversations/{conversation_id}"
    moved = client.patch(path, json={"model": "claude-opus-4-8"}, headers=alice)
    assert moved.status_code == 400 and "'enabled'" in moved.get_json()["error"]["message"]
    assert client.get(path, headers=alice).get_json()["model"] == "claude-haiku-4-5"  # unchanged
    both = client.patch(path, json={"model": "claude-opus-4-8", "thinking": {"type": "adaptive", "effort": "max"}},
                        headers=alice)
    assert both.status_code == 200, both.get_json()
    assert both.get_json()["thinking"] == {"type": "adaptive", "effort": "max"}
    refused = client.patch(path, json={"thinking": budget}, headers=alice)
    assert refused.status_code == 400
    off = client.patch(path, json={"thinking": None}, headers=alice)
    assert off.status_code == 200 and off.get_json()["thinking"] is None
    message = client.post(f"{path}/messages", json={"content": "hi", "thinking": budget}, headers=alice)
    assert message.status_code == 400 and "'enabled'" in message.get_json()["error"]["message"]


def test_models_list_says_what_each_model_takes(client, make_user):
    listed = client.get("/v1/models", headers=make_user()).get_json()["models"]
    thinking = {model["id"]: model["thinking"] for model in listed}
    assert thinking["claude-haiku-4-5"] == {"types": ["enabled"], "efforts": []}
    assert thinking["claude-opus-4-8"]["types"] == ["adaptive"] and "max" in thinking["claude-opus-4-8"]["efforts"]


def test_redacted_thinking_is_kept_and_sent_back(client, make_user, stack):
    alice = make_user()
    conversation_id = new_conversation(client, alice, thinking={"type": "adaptive"})
    job = say(client, alice, conversation_id, f"{REDACTED_TRIGGER} please")
    redacted = job["reply"]["blocks"][0]
    assert redacted["type"] == "redacted_thinking" and redacted["data"]
    marker = uuid.uuid4().hex
    say(client, alice, conversation_id, marker)
    (sent,) = model_requests(stack, marker)
    assert sent["messages"][1]["content"][0] == redacted
