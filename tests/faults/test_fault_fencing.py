"""Races a worker can lose while the model answers: its lease runs out and another
worker takes over, the job is cancelled and the next message runs, the conversation
is deleted, a window rebuild outlasts the lease. The loser must write nothing."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

import worker.pipeline as pipeline
from shared.models import Job
from tests.faults.stack import RecordingDispatcher, assert_consistent, wait_until
from tests.faults.turns import assert_one_turn, job_row, stall_first_call
from tests.integration.helpers import new_conversation, submit
from worker.pipeline import Runtime, run_turn

# No worker runs: nothing but the test touches its jobs.
pytestmark = pytest.mark.usefixtures("no_workers")


def test_a_worker_that_lost_its_lease_mid_call_does_not_overwrite_the_turn(fault_stack, api, user, runtime,
                                                                          monkeypatch):
    """Its lease ran out (PostgreSQL unreachable for longer than the lease, a paused
    process), another worker took the job over and finished it; when the first
    worker's model call returns, it must write nothing."""
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "taken over")["id"]
    services = fault_stack.worker_services()
    takeover = []

    def lease_lost_and_taken_over():
        with services.engine.begin() as db:
            db.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
                       {"id": job_id})
        takeover.append(run_turn(services, job_id, Runtime(RecordingDispatcher())))

    monkeypatch.setattr(services.provider, "complete",
                        stall_first_call(services, lease_lost_and_taken_over, "a reply nobody may see"))
    assert run_turn(services, job_id, runtime).status == "skipped"
    assert takeover[0].status == "done"
    assert_one_turn(fault_stack, conversation_id, job_id, "taken over")
    assert_consistent(fault_stack)


def test_a_job_cancelled_as_its_reply_arrives_does_not_overwrite_the_next_turn(fault_stack, api, user, runtime,
                                                                              monkeypatch):
    """Cancelled just as the model answered: the next message's turn takes the same
    seq and may finish first; the cancelled job's reply must not land on it."""
    conversation_id = new_conversation(api, user)
    cancelled = submit(api, user, conversation_id, "cancel me")["id"]
    following = submit(api, user, conversation_id, "next message")["id"]
    services = fault_stack.worker_services()
    finished = []

    def cancelled_and_next_turn_done():
        assert api.post(f"/v1/jobs/{cancelled}/cancel", headers=user).status_code == 200
        finished.append(run_turn(services, following, Runtime(RecordingDispatcher())))

    monkeypatch.setattr(services.provider, "complete",
                        stall_first_call(services, cancelled_and_next_turn_done, "a reply to a cancelled job"))
    assert run_turn(services, cancelled, runtime).status in ("done", "skipped")
    assert finished[0].status == "done"
    assert job_row(fault_stack, cancelled).status == "cancelled"
    assert_one_turn(fault_stack, conversation_id, following, "next message")
    assert_consistent(fault_stack)


@pytest.mark.parametrize("when", ["while the model answers", "while the log is written"])
def test_a_conversation_deleted_mid_turn_leaves_no_log_behind(fault_stack, api, user, runtime, monkeypatch, when):
    conversation_id = new_conversation(api, user)
    say_first = submit(api, user, conversation_id, "first")["id"]
    services = fault_stack.worker_services()
    assert run_turn(services, say_first, runtime).status == "done"
    job_id = submit(api, user, conversation_id, "deleted while answering")["id"]

    def delete() -> None:
        assert api.delete(f"/v1/conversations/{conversation_id}", headers=user).status_code == 204

    if when == "while the model answers":
        monkeypatch.setattr(services.provider, "complete", stall_first_call(services, delete, "too late"))
    else:
        real_put = services.store.put

        def put_after_delete(key, entry):
            delete()
            real_put(key, entry)
        monkeypatch.setattr(services.store, "put", put_after_delete)
    assert run_turn(services, job_id, runtime).status == "skipped"
    assert [key for key in services.store.list_keys("users/") if conversation_id in key] == []
    assert_consistent(fault_stack)


def test_the_lease_is_renewed_while_the_window_is_rebuilt(fault_stack, api, user, runtime, monkeypatch):
    """After Redis lost the cached windows, a rebuild reads up to a window's worth of log
    entries, one GET each, and can outlast the lease: the lease must be renewed then too,
    or the job is taken over again and again and finally failed."""
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "rebuild slowly")["id"]
    services = fault_stack.worker_services()
    real_load = pipeline.load_window

    def lease_expiry():
        with services.sessions() as session:
            return session.get(Job, uuid.UUID(job_id)).lease_expires_at

    def slow_load(services_, conversation):
        claimed_until = lease_expiry()
        wait_until(lambda: lease_expiry() > claimed_until, fault_stack.settings.job_lease_seconds,
                   interval=0.2, what="the lease to be renewed during the rebuild")
        return real_load(services_, conversation)

    monkeypatch.setattr(pipeline, "load_window", slow_load)
    assert run_turn(services, job_id, runtime).status == "done"
    assert_one_turn(fault_stack, conversation_id, job_id, "rebuild slowly")
