"""Object storage failing in the middle of a response (the connection cut while the
body is read) is an outage like any other: the API answers 503 and the worker hands
the job back, never a 500 or a failed job. (Turns whose rows keep their log entries are
read without storage; these read older turns, which go to the log.)"""
from __future__ import annotations

import pytest
from botocore.exceptions import ResponseStreamingError

from tests.faults.stack import assert_consistent
from tests.faults.turns import forget_copies, job_row
from tests.integration.helpers import new_conversation, submit
from worker.pipeline import run_turn

pytestmark = pytest.mark.usefixtures("no_workers")


class BrokenBody:
    def read(self, *_):
        raise ResponseStreamingError(error="Connection broken: IncompleteRead(0 bytes read, 483 more expected)")


def break_bodies(monkeypatch, store) -> None:
    """Every GET from `store` gets through, then loses its connection mid-body."""
    real = store.client.get_object

    def get_object(**kwargs):
        real(**kwargs)
        return {"Body": BrokenBody()}
    monkeypatch.setattr(store.client, "get_object", get_object)


def test_the_api_answers_503_when_a_log_read_breaks_mid_body(fault_stack, api, user, runtime, monkeypatch):
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "read me back")["id"]
    assert run_turn(fault_stack.worker_services(), job_id, runtime).status == "done"
    forget_copies(fault_stack, conversation_id)

    break_bodies(monkeypatch, fault_stack.services.store)
    response = api.get(f"/v1/conversations/{conversation_id}", headers=user)
    assert response.status_code == 503 and response.get_json()["error"]["type"] == "service_unavailable"


def test_a_window_rebuild_whose_read_breaks_hands_the_job_back(fault_stack, api, user, runtime, monkeypatch):
    conversation_id = new_conversation(api, user)
    first = submit(api, user, conversation_id, "first")["id"]
    services = fault_stack.worker_services()
    assert run_turn(services, first, runtime).status == "done"
    forget_copies(fault_stack, conversation_id)
    services.windows.delete(conversation_id)  # Redis lost it: the next turn rebuilds from the log
    second = submit(api, user, conversation_id, "second")["id"]

    with monkeypatch.context() as patch:
        break_bodies(patch, services.store)
        assert run_turn(services, second, runtime).status == "busy"
    assert job_row(fault_stack, second).status == "queued"
    assert run_turn(services, second, runtime).status == "done"
    assert_consistent(fault_stack)


def test_a_window_rebuild_reads_the_turn_rows_copies_not_the_log(fault_stack, api, user, runtime, monkeypatch):
    conversation_id = new_conversation(api, user)
    services = fault_stack.worker_services()
    assert run_turn(services, submit(api, user, conversation_id, "first")["id"], runtime).status == "done"
    services.windows.delete(conversation_id)  # Redis lost it: the next turn rebuilds from the turn rows
    second = submit(api, user, conversation_id, "second")["id"]
    with monkeypatch.context() as patch:
        break_bodies(patch, services.store)  # any read of the log would hand the job back
        assert run_turn(services, second, runtime).status == "done"
    page = api.get(f"/v1/conversations/{conversation_id}/messages?order=asc", headers=user).get_json()
    assert [m["content"] for m in page["data"][::2]] == ["first", "second"]
    assert_consistent(fault_stack)
