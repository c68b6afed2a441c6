"""A fork's log objects between the fork and their copy: what the checker says, what the
copy writes, a fork deleted before its copy, and the sweeper re-sending a lost copy. The
forks are made in-process without sending the copy task, so each state is held still."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from api.forks import fork
from bench import seed
from shared.models import Conversation, Turn
from shared.tasks import FORK_LOG_TASK, Dispatcher
from shared.users import get_or_create_user, issue_key
from worker.check import check
from worker.forks import copy_fork_log
from worker.sweeper import sweep_once


class Recorder(Dispatcher):
    """Records what would be sent instead of sending it."""

    def __init__(self):
        super().__init__(celery=None)
        self.sent: list[tuple[str, str]] = []

    def _send(self, task: str, job_id: object, countdown: float | None = None) -> None:
        self.sent.append((task, str(job_id)))


@pytest.fixture()
def unsent_fork(stack):
    """A fork of turns 1..2 of a seeded 3-turn conversation, its copy task never sent."""
    with stack.services.sessions.begin() as session:
        user = get_or_create_user(session, f"fork-log-{uuid.uuid4().hex[:8]}")
        headers = {"Authorization": f"Bearer {issue_key(session, user)}"}
    parent_id = seed.history(stack.services, user, 6, 40)
    with stack.services.sessions() as session:
        parent = session.get(Conversation, uuid.UUID(parent_id))
        child = fork(stack.services, session, user, parent, 2, None)
        session.commit()
        return {"id": str(child.conversation_id), "prefix": child.s3_file_location, "parent": parent_id,
                "headers": headers}


def about(lines, conversation_id: str) -> list:
    return [finding for finding in lines if conversation_id in finding.subject]


def test_copied_turns_are_pending_until_the_copy_writes_them(stack, client, unsent_fork):
    fork_id = unsent_fork["id"]
    # Readable at once, from the rows' copies, with no log object yet.
    messages = client.get(f"/v1/conversations/{fork_id}", headers=unsent_fork["headers"]).get_json()["messages"]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4] and stack.services.store.list_keys(unsent_fork["prefix"]) == []
    before = check(stack.services, grace=3600)
    assert about(before.findings, fork_id) == []
    assert [f.subject for f in about(before.pending, fork_id)] == [
        f"conversation {fork_id} turn 1", f"conversation {fork_id} turn 2"]

    assert copy_fork_log(stack.services, fork_id) == 2
    with stack.services.sessions() as session:
        rows = session.scalars(select(Turn).where(Turn.conversation_id == uuid.UUID(fork_id)).order_by(Turn.seq)).all()
        assert not session.get(Conversation, uuid.UUID(fork_id)).log_copy_pending
    assert [stack.services.store.get(row.log_key) for row in rows] == [row.entry for row in rows]
    assert all(row.log_key.startswith(unsent_fork["prefix"]) for row in rows)
    after = check(stack.services, grace=3600)
    assert about(after.findings, fork_id) == [] and about(after.pending, fork_id) == []
    assert copy_fork_log(stack.services, fork_id) == 0  # done: a re-sent task does nothing


def test_a_fork_deleted_before_its_copy_leaves_no_log(stack, client, unsent_fork):
    assert client.delete(f"/v1/conversations/{unsent_fork['id']}", headers=unsent_fork["headers"]).status_code == 204
    assert copy_fork_log(stack.services, unsent_fork["id"]) == 0
    assert stack.services.store.list_keys(unsent_fork["prefix"]) == []


def test_the_sweeper_sends_a_copy_again_once_it_is_overdue(stack, unsent_fork):
    fork_id = unsent_fork["id"]
    recorder = Recorder()
    sweep_once(stack.services, recorder)
    assert (FORK_LOG_TASK, fork_id) not in recorder.sent  # still within its task's time limit
    with stack.services.sessions.begin() as session:
        age = stack.settings.task_soft_time_limit_seconds + 60
        session.execute(update(Conversation).where(Conversation.conversation_id == uuid.UUID(fork_id))
                        .values(created_at=Conversation.created_at - timedelta(seconds=age)))
    sweep_once(stack.services, recorder)
    assert (FORK_LOG_TASK, fork_id) in recorder.sent
    copy_fork_log(stack.services, fork_id)
    recorder.sent.clear()
    sweep_once(stack.services, recorder)
    assert (FORK_LOG_TASK, fork_id) not in recorder.sent
