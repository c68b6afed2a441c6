"""Reading history while object storage fails: pages of turns that keep their entries
are served from PostgreSQL alone; older turns read from the log are a clear 503 (never a
partial page) and come back by themselves; an export cut by an outage cannot pass for a
whole one; and copies written back by reads check clean and go with the conversation."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from shared.models import Conversation
from shared.storage import StorageUnavailable
from tests.faults.stack import assert_consistent
from tests.faults.turns import forget_copies
from tests.integration.helpers import new_conversation, submit
from worker.pipeline import run_turn

pytestmark = pytest.mark.usefixtures("no_workers")


def talk(fault_stack, api, user, runtime, turns: int, copies: bool = True) -> str:
    """A conversation of `turns` real turns; without `copies`, as if written before turn
    rows kept their entries."""
    conversation_id = new_conversation(api, user)
    for n in range(1, turns + 1):
        job_id = submit(api, user, conversation_id, f"turn {n}")["id"]
        assert run_turn(fault_stack.worker_services(), job_id, runtime).status == "done"
    if not copies:
        forget_copies(fault_stack, conversation_id)
    return conversation_id


def test_pages_are_served_while_storage_is_cut_off_unless_they_need_the_log(fault_stack, api, user, runtime):
    kept = talk(fault_stack, api, user, runtime, 2)
    older = talk(fault_stack, api, user, runtime, 2, copies=False)
    fault_stack.s3.stop()
    try:
        page = api.get(f"/v1/conversations/{kept}/messages", headers=user).get_json()
        assert [m["content"] for m in page["data"][1::2]] == ["turn 2", "turn 1"]
        response = api.get(f"/v1/conversations/{older}/messages", headers=user)
        assert response.status_code == 503 and response.get_json()["error"]["type"] == "service_unavailable"
    finally:
        fault_stack.s3.start()
    page = api.get(f"/v1/conversations/{older}/messages", headers=user).get_json()
    assert [m["content"] for m in page["data"][1::2]] == ["turn 2", "turn 1"]


def test_an_export_cut_by_an_outage_ends_without_a_proper_end(fault_stack, api, user, runtime, monkeypatch):
    conversation_id = talk(fault_stack, api, user, runtime, 3, copies=False)
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

    forget_copies(fault_stack, conversation_id)  # the first turn's copy was kept by that read
    monkeypatch.setattr(store, "get", _refuse)  # down from the start: a plain 503 before any line
    response = api.get(f"/v1/conversations/{conversation_id}/export", headers=user)
    assert response.status_code == 503 and response.get_json()["error"]["type"] == "service_unavailable"


def test_copies_kept_after_a_failed_attempt_check_clean_and_go_with_the_conversation(
        fault_stack, api, user, runtime, monkeypatch):
    conversation_id = talk(fault_stack, api, user, runtime, 3, copies=False)
    services = fault_stack.services
    sessions = services.sessions

    class Refusing:  # PostgreSQL refuses the write-back, as a failover in the middle of it would
        def __call__(self, *args, **kwargs):
            return sessions(*args, **kwargs)

        def begin(self):
            raise OperationalError("BEGIN", None, Exception("the database system is shutting down"))
    with monkeypatch.context() as patch:
        patch.setattr(services, "sessions", Refusing())
        first = api.get(f"/v1/conversations/{conversation_id}/messages", headers=user).get_json()
    assert [m["content"] for m in first["data"][1::2]] == ["turn 3", "turn 2", "turn 1"]
    assert _copies(services, conversation_id) == 0
    assert_consistent(fault_stack)

    assert api.get(f"/v1/conversations/{conversation_id}/messages", headers=user).get_json() == first
    assert _copies(services, conversation_id) == 3
    assert_consistent(fault_stack)  # the checker compares each copy with its log entry
    prefix = f"users/{_owner(fault_stack, conversation_id)}/conversations/{conversation_id}/"
    assert api.delete(f"/v1/conversations/{conversation_id}", headers=user).status_code == 204
    assert services.store.list_keys(prefix) == []
    assert _copies(services, conversation_id) == 0


def _copies(services, conversation_id: str) -> int:
    with services.engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM turns WHERE conversation_id = :id AND entry IS NOT NULL"),
                          {"id": conversation_id}).scalar_one()


def _refuse(entries):
    raise StorageUnavailable("connection reset")


def _owner(fault_stack, conversation_id: str):
    with fault_stack.services.sessions() as session:
        return session.get(Conversation, uuid.UUID(conversation_id)).user_id
