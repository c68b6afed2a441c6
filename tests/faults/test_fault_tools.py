"""Tool rounds survive the pipeline's faults: a worker that dies between writing a reply
that calls tools and committing it, or a continuation delivered again after a crash,
leaves one turn, the calls the stored turn holds, and a conversation the Messages API
still accepts. The pipeline runs here, in this process, so each crash is placed exactly."""
from __future__ import annotations

import pytest
from sqlalchemy import text

import worker.pipeline as pipeline
from tests.faults.stack import assert_consistent
from tests.faults.turns import job_row, log_keys, turns_of
from tests.integration.helpers import new_conversation, submit
from worker.pipeline import run_turn

pytestmark = pytest.mark.usefixtures("no_workers")

CLOCK = {"name": "clock", "input_schema": {"type": "object"}}


class Crash(BaseException):
    """The worker process dying: nothing in the pipeline catches it."""


def crash_once(monkeypatch, name: str) -> None:
    real, calls = getattr(pipeline, name), []

    def dying(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise Crash()
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, name, dying)


def lease_runs_out(services, job_id: str) -> None:
    with services.engine.begin() as db:  # as it would JOB_LEASE_SECONDS later
        db.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
                   {"id": job_id})


def test_a_worker_that_dies_before_committing_a_tool_call_leaves_no_half_turn(fault_stack, api, user, runtime,
                                                                              monkeypatch):
    conversation_id = new_conversation(api, user, tools=[CLOCK])
    job_id = submit(api, user, conversation_id, "call tool clock {}")["id"]
    services = fault_stack.worker_services()
    crash_once(monkeypatch, "_commit_turn")

    with pytest.raises(Crash):
        run_turn(services, job_id, runtime)
    assert turns_of(fault_stack, conversation_id) == [] and job_row(fault_stack, job_id).required_action is None
    events = [e.type for e in services.events.read(job_id, 0)]
    assert "tool.call" not in events  # nothing announced a call that was never stored

    lease_runs_out(services, job_id)
    assert run_turn(services, job_id, runtime).status == "done"
    job = job_row(fault_stack, job_id)
    (turn,) = turns_of(fault_stack, conversation_id)
    stored_calls = [b for b in turn.entry["messages"][1]["content"] if b["type"] == "tool_use"]
    assert job.status == "requires_action" and job.attempts == 2
    assert [c["id"] for c in job.required_action["tool_calls"]] == [b["id"] for b in stored_calls]
    assert log_keys(fault_stack, conversation_id) == [turn.log_key]
    events = services.events.read(job_id, 0)
    calls = [e.data for e in events if e.type == "tool.call"]
    assert [c["id"] for c in calls] == [b["id"] for b in stored_calls]  # announced once, the stored one
    kinds = [e.type for e in events]  # the dead attempt's streamed input is discarded by a reset
    assert kinds.index("tool.call.delta") < kinds.index("message.reset") < len(kinds) - 1 - kinds[::-1].index(
        "tool.call.delta")
    assert_consistent(fault_stack)


def test_a_continuation_rerun_after_a_crash_writes_one_turn_and_the_conversation_goes_on(
        fault_stack, api, user, runtime, monkeypatch):
    conversation_id = new_conversation(api, user, tools=[CLOCK])
    job_id = submit(api, user, conversation_id, "call tool clock {}")["id"]
    services = fault_stack.worker_services()
    assert run_turn(services, job_id, runtime).status == "done"
    (call,) = job_row(fault_stack, job_id).required_action["tool_calls"]
    response = api.post(f"/v1/jobs/{job_id}/tool_results", headers=user,
                        json={"results": [{"tool_call_id": call["id"], "content": "noon"}]})
    continuation = response.get_json()["job"]["id"]
    crash_once(monkeypatch, "_commit_turn")

    with pytest.raises(Crash):
        run_turn(services, continuation, runtime)
    lease_runs_out(services, continuation)
    assert run_turn(services, continuation, runtime).status == "done"
    assert run_turn(services, continuation, runtime).status == "skipped"  # delivered once more
    assert job_row(fault_stack, continuation).reply["content"] == "The tool clock returned: noon"
    assert [t.seq for t in turns_of(fault_stack, conversation_id)] == [1, 2]

    following = submit(api, user, conversation_id, "thanks")["id"]
    assert run_turn(services, following, runtime).status == "done"
    assert job_row(fault_stack, following).status == "succeeded"  # the model accepted the pairing
    assert_consistent(fault_stack)
