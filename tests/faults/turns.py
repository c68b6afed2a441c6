"""Reading a conversation's turns and log, and stalling the model, for the fault tests
that run the pipeline in the test process."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.models import Conversation, Job, Turn


def turns_of(stack, conversation_id: str) -> list[Turn]:
    with stack.services.sessions() as session:
        return session.scalars(select(Turn).where(Turn.conversation_id == uuid.UUID(conversation_id))
                               .order_by(Turn.seq)).all()


def log_keys(stack, conversation_id: str) -> list[str]:
    with stack.services.sessions() as session:
        prefix = session.get(Conversation, uuid.UUID(conversation_id)).s3_file_location
    return stack.services.store.list_keys(prefix)


def job_row(stack, job_id: str) -> Job:
    with stack.services.sessions() as session:
        return session.get(Job, uuid.UUID(job_id))


def assert_one_turn(stack, conversation_id: str, job_id: str, content: str) -> None:
    turns = turns_of(stack, conversation_id)
    assert [(t.seq, str(t.job_id)) for t in turns] == [(1, job_id)]
    assert log_keys(stack, conversation_id) == [turns[0].log_key]
    entry = stack.services.store.get(turns[0].log_key)
    job = job_row(stack, job_id)
    assert job.status == "succeeded"
    assert [m["content"] for m in entry["messages"]] == [content, job.reply["content"]]
    assert entry["job_id"] == job_id


def stall_first_call(services, meanwhile, reply_text: str):
    """Patch the provider: its first call runs `meanwhile()` (other workers acting while
    this one waits on the model), then returns `reply_text`; later calls are real."""
    from shared.model import ModelReply

    real, calls = services.provider.complete, []

    def complete(request):
        calls.append(request)
        if len(calls) > 1:
            return real(request)
        meanwhile()
        return ModelReply(reply_text, "stalled-model", 10, 10)
    return complete


def forget_copies(stack, conversation_id: str) -> None:
    """Its turn rows without their copies of the log entries, as turns written before rows
    kept them: reads of them go to the log."""
    from sqlalchemy import text

    with stack.services.engine.begin() as db:
        db.execute(text("UPDATE turns SET entry = NULL WHERE conversation_id = :id"), {"id": conversation_id})
