"""A job handed back after a backing service failed: its task retries it with backoff,
the sweeper does not pile re-sends on top, and hand-backs are not counted as the
worker deaths that MAX_JOB_ATTEMPTS limits."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from tests.faults.stack import RecordingDispatcher, assert_consistent
from tests.faults.turns import assert_one_turn, job_row
from tests.integration.helpers import new_conversation, submit
from shared.jobs import claim, release
from worker.pipeline import Runtime, run_turn
from worker.retry import LONGEST_RETRY_SECONDS, backoff
from worker.sweeper import sweep_once

# No worker runs: nothing but the test touches its jobs.
pytestmark = pytest.mark.usefixtures("no_workers")


def test_a_handed_back_job_is_left_to_its_retries_not_resent_at_every_sweep(fault_stack, api, user):
    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "storage was down")["id"]
    services = fault_stack.worker_services()
    with services.engine.begin() as db:  # submitted long ago: the grace for its first send is over
        db.execute(text("UPDATE jobs SET created_at = now() - interval '1 hour' WHERE id = :id"), {"id": job_id})
    release(services, claim(services, uuid.UUID(job_id)))  # its worker could not write the log

    sweeper = RecordingDispatcher()
    sweep_once(services, sweeper)
    assert job_id not in sweeper.turns, "its task retries it with backoff; a re-send would call the model again"

    with services.engine.begin() as db:  # no retry came for longer than the longest backoff: lost
        db.execute(text("UPDATE jobs SET lease_expires_at = now() - make_interval(secs => :s) WHERE id = :id"),
                   {"id": job_id, "s": LONGEST_RETRY_SECONDS + fault_stack.settings.queued_grace_seconds + 1})
    sweep_once(services, sweeper)
    assert job_id in sweeper.turns
    assert run_turn(services, job_id, Runtime(RecordingDispatcher())).status == "done"
    assert_consistent(fault_stack)


@pytest.mark.parametrize("retries, low, high", [(0, 2, 3), (1, 4, 6), (2, 8, 12), (3, 16, 24), (4, 30, 45),
                                                (50, 30, 45)])
def test_retry_delays_double_up_to_a_cap_with_jitter(retries, low, high):
    delays = [backoff(2.0, retries) for _ in range(200)]
    assert low <= min(delays) and max(delays) <= high
    assert max(delays) - min(delays) > (high - low) / 4, "jitter spreads retries out"


def test_hand_backs_do_not_use_up_the_takeovers_of_a_job_whose_worker_dies(fault_stack, api, user):
    """Storage was down twice while the job ran (handed back each time), then its
    worker died: that is one death, not a job that keeps killing its workers."""

    conversation_id = new_conversation(api, user)
    job_id = submit(api, user, conversation_id, "unlucky")["id"]
    services = fault_stack.worker_services()
    for _ in range(fault_stack.settings.max_job_attempts):
        release(services, claim(services, uuid.UUID(job_id)))
    assert claim(services, uuid.UUID(job_id)) is not None  # ... and this worker dies
    with services.engine.begin() as db:
        db.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
                   {"id": job_id})

    sweeper = RecordingDispatcher()
    sweep_once(services, sweeper)
    assert job_row(fault_stack, job_id).status == "running" and sweeper.turns == [job_id]
    assert run_turn(services, job_id, Runtime(RecordingDispatcher())).status == "done"
    assert_one_turn(fault_stack, conversation_id, job_id, "unlucky")
    assert_consistent(fault_stack)
