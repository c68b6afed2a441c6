"""Model failures end to end through the worker: each lands in its category, transient
ones recover, no job stays running, no half turn is written, and the number of model
calls stays within 1 + MODEL_MAX_RETRIES (2 in the test stack)."""
from __future__ import annotations

import uuid

import pytest
import requests
from sqlalchemy import func, select

from shared.models import Job, Turn
from tests.integration.helpers import new_conversation, submit, wait_job

CASES = {  # faults the offline model acts out, one per call: (status, error type, model calls)
    "rate limited once": (["rate_limited"], "succeeded", None, 2),
    "overloaded twice": (["overloaded", "overloaded"], "succeeded", None, 3),
    "stream cut half-way": (["cut_midstream"], "succeeded", None, 2),
    "overloaded inside the stream": (["overloaded_midstream"], "succeeded", None, 2),
    "connection dropped": (["disconnect"], "succeeded", None, 2),
    "5xx past the retry limit": (["server_error"] * 3, "failed", "model_unavailable", 3),
    "bad credentials": (["auth"], "failed", "provider_auth", 1),
    "rejected request": (["invalid_request"], "failed", "invalid_request", 1),
}


@pytest.fixture()
def offline(stack):
    def post(**settings) -> dict:
        response = requests.post(f"{stack.model.url}/_control", json=settings, timeout=5)
        response.raise_for_status()
        return response.json()
    yield post
    post(faults=[], chunk_chars=8)


def model_calls(stack) -> int:
    return len(requests.get(f"{stack.model.url}/_requests", timeout=5).json()["requests"])


@pytest.mark.parametrize("case", CASES)
def test_model_fault(stack, client, alice, offline, case):
    faults, status, kind, calls = CASES[case]
    conversation_id = new_conversation(client, alice)
    requests.delete(f"{stack.model.url}/_requests", timeout=5)
    offline(faults=faults, chunk_chars=4)
    job = wait_job(client, alice, submit(client, alice, conversation_id, "A message long enough to stream")["id"])

    assert (job["status"], (job["error"] or {}).get("type")) == (status, kind), job["error"]
    assert model_calls(stack) == calls
    assert offline()["faults"] == []  # every fault was acted out, none left for the next test
    assert job["request"]["content"] == "A message long enough to stream"
    messages = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"]
    assert [m["role"] for m in messages] == (["user", "assistant"] if status == "succeeded" else [])
    with stack.services.sessions() as session:
        conversation = uuid.UUID(conversation_id)
        assert session.scalar(select(func.count()).select_from(Turn).where(Turn.conversation_id == conversation)) \
            == len(messages) // 2
        assert session.scalar(select(func.count()).select_from(Job).where(
            Job.conversation_id == conversation, Job.status == "running")) == 0
