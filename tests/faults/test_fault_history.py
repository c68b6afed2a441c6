"""Reading history while object storage fails: a page is a clear 503 (never a partial
page), comes back by itself, an export cut by an outage cannot pass for a whole one, and
a segment whose write failed is simply written by a later read, with nothing lost,
doubled or left behind."""
from __future__ import annotations

import json
import uuid

import pytest

from shared.models import Conversation
from shared.storage import StorageUnavailable
from tests.faults.stack import assert_consistent
from tests.integration.helpers import new_conversation, submit
from worker.pipeline import run_turn

pytestmark = pytest.mark.usefixtures("no_workers")


def talk(fault_stack, api, user, runtime, turns: int) -> str:
    conversation_id = new_conversation(api, user)
    for n in range(1, turns + 1):
        job_id = submit(api, user, conversation_id, f"turn {n}")["id"]
        assert run_turn(fault_stack.worker_services(), job_id, runtime).status == "done"
    return conversation_id


def test_a_page_while_storage_is_cut_off_is_503_then_serves_again(fault_stack, api, user, runtime):
    conversation_id = talk(fault_stack, api, user, runtime, 2)
    fault_stack.s3.stop()
    response = api.get(f"/v1/conversations/{conversation_id}/messages", headers=user)
    assert response.status_code == 503 and response.get_json()["error"]["type"] == "service_unavailable"
    fault_stack.s3.start()
    page = api.get(f"/v1/conversations/{conversation_id}/messages", headers=user).get_json()
    assert [m["content"] for m in page["data"][1::2]] == ["turn 2", "turn 1"]


def test_an_export_cut_by_an_outage_ends_without_a_proper_end(fault_stack, api, user, runtime, monkeypatch):
    conversation_id = talk(fault_stack, api, user, runtime, 3)
    store, real_get = fault_stack.services.store, fault_stack.services.store.get
    monkeypatch.setattr("api.history.FIRST_BATCH", 1)  # one turn a batch: the outage falls after the first
    monkeypatch.setattr("api.history.EXPORT_BATCH", 1)

    def get(key: str):
        if not key.endswith("/0000000001.json"):  # the first turn is read, then storage goes away
            raise StorageUnavailable("connection refused")
        return real_get(key)
    monkeypatch.setattr(store, "get", get)

    response = api.get(f"/v1/conversations/{conversation_id}/export", headers=user, buffered=False)
    assert response.status_code == 200  # the stream had started
    received = []
    with pytest.raises(StorageUnavailable):  # gunicorn drops the connection: the chunked body never ends
        for chunk in response.response:
            received.append(chunk)
    lines = b"".join(received).decode().splitlines()
    assert [json.loads(line)["content"] for line in lines][:1] == ["turn 1"] and len(lines) == 2

    monkeypatch.setattr(store, "get", _refuse)  # down from the start: a plain 503 before any line
    response = api.get(f"/v1/conversations/{conversation_id}/export", headers=user)
    assert response.status_code == 503 and response.get_json()["error"]["type"] == "service_unavailable"


def test_segments_written_after_a_failed_attempt_check_clean_and_go_with_the_conversation(
        fault_stack, api, user, runtime, monkeypatch):
    conversation_id = talk(fault_stack, api, user, runtime, 10)  # one whole block of ten finished turns
    store = fault_stack.services.store
    with monkeypatch.context() as patch:  # the API dies between reading the block and writing its copy
        patch.setattr(store, "put_many", _refuse)
        first = api.get(f"/v1/conversations/{conversation_id}/messages?limit=20", headers=user).get_json()
    prefix = f"users/{_owner(fault_stack, conversation_id)}/conversations/{conversation_id}/"
    assert [m["content"] for m in first["data"][1::2]] == [f"turn {n}" for n in range(10, 0, -1)]
    assert not [key for key in store.list_keys(prefix) if "/segments/" in key]
    assert_consistent(fault_stack)

    again = api.get(f"/v1/conversations/{conversation_id}/messages?limit=20", headers=user).get_json()
    assert again == first
    assert [key for key in store.list_keys(prefix) if "/segments/" in key] == [f"{prefix}segments/0000000001.json"]
    assert_consistent(fault_stack)  # the checker counts turn objects only; the copy is no orphan
    assert api.delete(f"/v1/conversations/{conversation_id}", headers=user).status_code == 204
    assert store.list_keys(prefix) == []


def _refuse(entries):
    raise StorageUnavailable("connection reset")


def _owner(fault_stack, conversation_id: str):
    with fault_stack.services.sessions() as session:
        return session.get(Conversation, uuid.UUID(conversation_id)).user_id
