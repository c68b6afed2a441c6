"""The consistency checker finds each kind of damage, and only damage."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from sqlalchemy import select, text

from shared.config import ROOT
from shared.models import Conversation, Turn
from shared.storage import turn_key
from tests.faults.stack import RecordingDispatcher, assert_consistent
from tests.integration.helpers import new_conversation, submit
from worker.check import check
from worker.pipeline import Runtime, run_turn

# No worker runs: nothing but the test touches its jobs.
pytestmark = pytest.mark.usefixtures("no_workers")


def run_checker_command(stack) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.check"], cwd=ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=60)


def conversation_with_turns(stack, api, user, count: int) -> tuple[Conversation, list[Turn]]:
    conversation_id = new_conversation(api, user)
    runtime = Runtime(RecordingDispatcher())
    for n in range(count):
        job_id = submit(api, user, conversation_id, f"turn {n + 1}")["id"]
        assert run_turn(stack.worker_services(), job_id, runtime).status == "done"
    with stack.services.sessions() as session:
        conversation = session.get(Conversation, uuid.UUID(conversation_id))
        turns = session.scalars(select(Turn).where(Turn.conversation_id == conversation.conversation_id)
                                .order_by(Turn.seq)).all()
    return conversation, turns


def test_the_checker_reports_every_kind_of_damage_and_nothing_else(fault_stack, api, user):
    assert_consistent(fault_stack)
    store, services = fault_stack.services.store, fault_stack.services
    damaged, turns = conversation_with_turns(fault_stack, api, user, 5)
    prefix = damaged.s3_file_location
    stray_prefix = f"users/{uuid.uuid4()}/conversations/{uuid.uuid4()}/"
    stuck = submit(api, user, str(damaged.conversation_id), "never finishes")["id"]
    try:
        store.delete_prefix(turns[0].log_key)                                     # missing_log
        entry = store.get(turns[1].log_key)
        entry["messages"][1]["content"] = "not what the job replied"
        store.put(turns[1].log_key, entry)                                         # wrong_log
        store.put(turns[2].log_key, store.get(turns[3].log_key))                   # wrong_log (another turn's)
        store.put(turn_key(prefix, 6), {"seq": 6, "messages": []})                 # pending, not a finding
        store.put(turn_key(prefix, 9), {"seq": 9, "messages": []})                 # orphan_log
        store.put(turn_key(stray_prefix, 1), {"seq": 1, "messages": []})           # orphan_log
        with services.engine.begin() as db:
            db.execute(text("UPDATE jobs SET status = 'running', attempts = 1, "   # stuck_job
                            "lease_expires_at = now() - interval '1 hour' WHERE id = :id"), {"id": stuck})
            db.execute(text("UPDATE jobs SET status = 'failed' WHERE id = :id"),  # stray_turn
                       {"id": turns[4].job_id})
            db.execute(text("UPDATE turns SET entry = jsonb_set(entry, '{outcome}', '\"refused\"') "
                            "WHERE id = :id"), {"id": turns[4].id})                # wrong_copy
            db.execute(text("DELETE FROM turns WHERE id = :id"), {"id": turns[3].id})  # missing_turn, counters

        report = check(services)
        found = sorted((f.kind, f.subject) for f in report.findings)
        in_damaged = f"conversation {damaged.conversation_id}"
        assert found == sorted([
            ("counters", in_damaged),
            ("missing_log", f"{in_damaged} turn 1"),
            ("missing_turn", f"job {turns[3].job_id}"),
            ("orphan_log", turn_key(prefix, 4)),
            ("orphan_log", turn_key(prefix, 9)),
            ("orphan_log", turn_key(stray_prefix, 1)),
            ("stray_turn", f"{in_damaged} turn 5"),
            ("wrong_copy", f"{in_damaged} turn 5"),
            ("stuck_job", stuck),
            ("wrong_log", f"{in_damaged} turn 2"),
            ("wrong_log", f"{in_damaged} turn 3"),
        ]), report.lines()
        assert [f.subject for f in report.pending] == [turn_key(prefix, 6)]

        result = run_checker_command(fault_stack)
        assert result.returncode == 1, result.stderr
        lines = result.stdout.strip().splitlines()
        assert len(lines) == len(report.findings) + len(report.pending) + 1
        assert lines[-1].startswith("checked ") and lines[-1].endswith("11 findings, 1 pending")
    finally:
        api.delete(f"/v1/conversations/{damaged.conversation_id}", headers=user)
        store.delete_prefix(stray_prefix)

    result = run_checker_command(fault_stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("0 findings, 0 pending")
