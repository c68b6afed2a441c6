"""Setting the stage straight through the database and the log store, to keep set-up fast."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from sqlalchemy import delete, insert, text, update

from api.service import create_conversation, submit_message
from shared.bootstrap import Services
from shared.models import Conversation, Turn, User
from shared.storage import LogStore, turn_key


def conversations(services: Services, user: User, count: int, name: str = "bench") -> list[str]:
    with services.sessions.begin() as session:
        return [str(create_conversation(session, user, f"{name}-{n}", None).conversation_id) for n in range(count)]


def history(services: Services, user: User, messages: int, message_chars: int, store: LogStore | None = None,
            copies: bool = True) -> str:
    """A conversation with `messages` earlier messages (half user, half assistant), written as the
    pipeline writes them: one log object and one turn row per turn (with its entry's copy,
    unless `copies` is False, as turns written before copies were kept), the objects to
    `store` (default: the services' own). Returns its id."""
    store = store or services.store
    conversation_id = conversations(services, user, 1, f"history-{messages}")[0]
    with services.sessions() as session:
        prefix = session.get(Conversation, uuid.UUID(conversation_id)).s3_file_location
    tokens = max(1, (message_chars + 3) // 4)
    now = datetime.now(timezone.utc).isoformat()
    rows = []
    turns = messages // 2
    job_ids = {seq: uuid.uuid4() for seq in range(1, turns + 1)}  # each entry names its turn's job, as the pipeline's do

    entries = {}

    def write(seq: int) -> None:
        text_ = (f"turn {seq} " * message_chars)[:message_chars]
        store.put(turn_key(prefix, seq), entries.setdefault(seq, {
            "version": 2, "seq": seq, "job_id": str(job_ids[seq]), "outcome": "complete", "stop_reason": "end_turn",
            "usage": {"input_tokens": tokens, "output_tokens": tokens},
            "messages": [{"role": "user", "content": text_, "tokens": tokens, "created_at": now},
                         {"role": "assistant", "content": text_, "tokens": tokens, "created_at": now,
                          "model": "offline"}]}))

    with ThreadPoolExecutor(8) as pool:  # each put is fsynced; overlap them
        list(pool.map(write, range(1, turns + 1)))
    for seq in range(1, turns + 1):
        rows.append({"conversation_id": uuid.UUID(conversation_id), "seq": seq, "job_id": job_ids[seq],
                     "log_key": turn_key(prefix, seq), "user_tokens": tokens, "assistant_tokens": tokens,
                     "input_tokens": tokens, "output_tokens": tokens, "entry": entries[seq] if copies else None})
    with services.sessions.begin() as session:
        if rows:
            session.execute(insert(Turn), rows)
        session.execute(update(Conversation).where(Conversation.conversation_id == uuid.UUID(conversation_id))
                        .values(turn_count=turns, message_count=turns * 2))
    return conversation_id


def running_jobs(services: Services, user: User, count: int) -> list[str]:
    """Jobs that look held by a worker elsewhere while the model talks for an hour:
    their event streams stay open and quiet. The sweeper leaves them alone (live lease)."""
    ids = []
    for conversation_id in conversations(services, user, count, "idle"):
        with services.sessions() as session:
            job, _ = submit_message(services, session, user, uuid.UUID(conversation_id), "an idle stream", None)
            ids.append(str(job.id))
    with services.engine.begin() as connection:
        connection.execute(text("""
            UPDATE jobs SET status = 'running', attempts = 1, worker = 'bench-phantom', started_at = now(),
                   lease_expires_at = now() + interval '1 hour'
             WHERE user_id = :user"""), {"user": user.id})
    return ids


def drop_conversations(services: Services, user: User) -> None:
    with services.sessions.begin() as session:
        session.execute(delete(Conversation).where(Conversation.user_id == user.id))
