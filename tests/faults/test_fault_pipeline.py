"""Every step of the turn pipeline is idempotent: a second delivery of a job, or a
re-run after a crash between "log written" and "turn committed" (or after it),
leaves exactly one turn in PostgreSQL and one entry in the log. The pipeline runs
here, in this process, so each crash can be placed exactly."""
from __future__ import annotations

import pytest
from sqlalchemy import exc as sql_errors, text

import worker.pipeline as pipeline
from tests.faults.stack import RecordingDispatcher, assert_consistent, text_of
from tests.faults.turns import assert_one_turn, job_row, log_keys, turns_of
from tests.integration.helpers import new_conversation, submit
from worker.check import check
from worker.pipeline import Runtime, run_turn

# No worker runs: nothing but the test touches its jobs.
pytestmark = pytest.mark.usefixtures("no_workers")


class Crash(BaseException):
    """The worker process dying: nothing in the pipeline catches it."""


def fail_once(monkeypatch, name: str, error: BaseException) -> list:
    """Make pipeline.`name` raise `error` on its first call only; returns the call log."""
    real, calls = getattr(pipeline, name), []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, name, flaky)
    return calls


def test_a_second_delivery_of_a_finished_job_does_nothing(fault_stack, api, user, runtime):
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "delivered twice")["id"]
    services = fault_stack.worker_services()

    assert run_turn(services, job_id, runtime).status == "done"
    assert run_turn(services, job_id, runtime).status == "skipped"

    assert_one_turn(fault_stack, conversation_id, job_id, "delivered twice")
    assert job_row(fault_stack, job_id).attempts == 1
    assert_consistent(fault_stack)


def test_a_second_delivery_while_the_first_runs_waits_for_its_lease(fault_stack, api, user, runtime):
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "still running")["id"]
    services = fault_stack.worker_services()
    second = []

    def deliver_again_mid_call(real_complete):
        def complete(request):
            second.append(run_turn(services, job_id, Runtime(RecordingDispatcher())))
            return real_complete(request)
        return complete

    provider = services.provider
    real = provider.complete
    provider.complete = deliver_again_mid_call(real)
    try:
        assert run_turn(services, job_id, runtime).status == "done"
    finally:
        provider.complete = real
    # The duplicate found the job held: it is told to come back when the lease could have run out.
    assert second[0].status == "busy" and 0 < second[0].retry_after <= fault_stack.settings.job_lease_seconds
    assert_one_turn(fault_stack, conversation_id, job_id, "still running")
    assert_consistent(fault_stack)


def test_a_commit_that_fails_after_the_log_write_is_retried_into_one_turn(fault_stack, api, user, runtime,
                                                                          monkeypatch):
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "commit failed once")["id"]
    services = fault_stack.worker_services()
    down = sql_errors.OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
    calls = fail_once(monkeypatch, "_commit_turn", down)

    first = run_turn(services, job_id, runtime)
    assert first.status == "busy" and first.retry_after > 0
    # The log entry was written, the turn was not: the job is handed back, the entry is pending.
    assert job_row(fault_stack, job_id).status == "queued"
    assert turns_of(fault_stack, conversation_id) == []
    report = check(services)
    assert not report.findings and len(report.pending) == 1, report.lines()

    assert run_turn(services, job_id, runtime).status == "done"
    assert len(calls) == 2
    assert_one_turn(fault_stack, conversation_id, job_id, "commit failed once")
    assert_consistent(fault_stack)


def test_a_worker_that_dies_between_log_and_commit_is_taken_over_into_one_turn(fault_stack, api, user,
                                                                                runtime, monkeypatch):
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "died after the log write")["id"]
    services = fault_stack.worker_services()
    fail_once(monkeypatch, "_commit_turn", Crash())

    with pytest.raises(Crash):
        run_turn(services, job_id, runtime)
    assert job_row(fault_stack, job_id).status == "running"
    assert len(log_keys(fault_stack, conversation_id)) == 1
    # Another delivery while the dead worker's lease is live must not start a second run.
    assert run_turn(services, job_id, runtime).status == "busy"

    with services.engine.begin() as db:  # the lease runs out, as it would 5 s later
        db.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
                   {"id": job_id})
    assert run_turn(services, job_id, runtime).status == "done"
    assert job_row(fault_stack, job_id).attempts == 2
    assert_one_turn(fault_stack, conversation_id, job_id, "died after the log write")
    assert_consistent(fault_stack)


def test_a_crash_after_the_commit_loses_nothing_for_the_next_turn(fault_stack, api, user, runtime, monkeypatch):
    """Dying after the commit skips the window refresh and the send of the next turn:
    the next turn rebuilds the window from the log, and is sent by the sweeper."""
    conversation_id = new_conversation(api, user)
    first = submit(api, user, conversation_id, "first")["id"]
    second = submit(api, user, conversation_id, "second")["id"]
    services = fault_stack.worker_services()
    fail_once(monkeypatch, "save_window", Crash())

    with pytest.raises(Crash):
        run_turn(services, first, runtime)
    assert job_row(fault_stack, first).status == "succeeded" and runtime.dispatcher.turns == []

    assert run_turn(services, second, runtime).status == "done"
    sent = fault_stack.model_requests()[-1]["messages"]
    assert [text_of(m["content"]) for m in sent] == ["first", job_row(fault_stack, first).reply["content"], "second"]
    assert [t.seq for t in turns_of(fault_stack, conversation_id)] == [1, 2]
    assert_consistent(fault_stack)
