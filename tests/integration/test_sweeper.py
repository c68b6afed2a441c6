"""Jobs whose task was lost or whose worker died still finish, exactly once."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from api.service import submit_message
from shared.users import authenticate
from tests.integration.helpers import new_conversation, wait_job


def queue_without_sending(stack, headers, conversation_id: str, content: str) -> str:
    """A committed job whose Celery message never reached the broker."""
    with stack.services.sessions() as session:
        user = authenticate(session, headers["Authorization"].split()[1])
        job, _ = submit_message(stack.services, session, user, uuid.UUID(conversation_id), content, None)
        return str(job.id)


def test_a_job_whose_task_was_lost_is_resent(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    job_id = queue_without_sending(stack, alice, conversation_id, "lost in the broker")
    job = wait_job(client, alice, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 1
    messages = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"]
    assert [m["content"] for m in messages][0::2] == ["lost in the broker"]


def test_a_job_whose_worker_died_is_taken_over_once(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    job_id = queue_without_sending(stack, alice, conversation_id, "worker died")
    with stack.services.engine.begin() as db:  # as a worker that claimed it and then vanished
        db.execute(text("UPDATE jobs SET status = 'running', attempts = 1, "
                        "lease_expires_at = now() - interval '1 second' WHERE id = :id"), {"id": job_id})
    job = wait_job(client, alice, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    messages = client.get(f"/v1/conversations/{conversation_id}", headers=alice).get_json()["messages"]
    assert len(messages) == 2


def test_a_job_out_of_attempts_fails_and_the_conversation_goes_on(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    doomed = queue_without_sending(stack, alice, conversation_id, "crashed every time")
    with stack.services.engine.begin() as db:
        db.execute(text("UPDATE jobs SET status = 'running', attempts = :n, takeovers = :n - 1, "
                        "lease_expires_at = now() - interval '1 second' WHERE id = :id"),
                   {"id": doomed, "n": stack.settings.max_job_attempts})
    after = queue_without_sending(stack, alice, conversation_id, "next message")
    failed = wait_job(client, alice, doomed)
    assert failed["status"] == "failed" and failed["error"]["type"] == "internal"
    assert failed["request"]["content"] == "crashed every time"
    assert wait_job(client, alice, after)["status"] == "succeeded"


def test_a_handed_back_job_is_resent_whatever_its_attempts(stack, client, alice):
    conversation_id = new_conversation(client, alice)
    job_id = queue_without_sending(stack, alice, conversation_id, "handed back")
    with stack.services.engine.begin() as db:  # released after transient failures, its retry lost
        db.execute(text("UPDATE jobs SET attempts = :n WHERE id = :id"),
                   {"id": job_id, "n": stack.settings.max_job_attempts})
    assert wait_job(client, alice, job_id)["status"] == "succeeded"
