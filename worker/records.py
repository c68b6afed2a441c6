"""The pipeline's port to PostgreSQL: what it reads and writes of the job it runs and of the
turn it stores. One object, so that the pipeline's decisions (fence lost, busy, cancelled,
handed back, failed) can be checked against a fake of it with no database
(tests/unit/fakes.py); the job-state SQL itself is shared/jobs/sql.py's."""
from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import bindparam, select

from shared.bootstrap import Services
from shared.db import one_statement, prepared
from shared.files import user_content
from shared.jobs import Claim, claim, commit_turn, end_job, held_job, lease_left, release, renew, renew_all
from shared.model import ModelReply
from shared.models import Conversation, Job
from worker.usage import add_daily_usage

Ended = tuple[Job, "str | None"]  # the ended job and the conversation's job to send next

# A Core select, not the ORM's session.get, one statement outside a transaction
# (shared/db.one_statement).
_CONVERSATION = select(Conversation.conversation_id).where(Conversation.conversation_id == bindparam("id"))


class TurnRecords:
    def __init__(self, services: Services):
        self.services = services
        self.lease_seconds = services.settings.job_lease_seconds

    def claim(self, job_id: uuid.UUID, worker: str | None) -> Claim | None:
        """The job, now held by this attempt, if it may run (shared/jobs's rule), with its
        conversation as it is now."""
        return claim(self.services, job_id, worker)

    def lease_left(self, job_id: uuid.UUID) -> float | None:
        """Seconds left on a running job's lease (another worker holds it); None if it is
        not running: finished, deleted, or waiting behind an earlier turn."""
        return lease_left(self.services, job_id)

    def renew(self, held: Claim) -> bool:
        return renew(self.services, held)

    def renew_all(self, claims: list[Claim]) -> set[uuid.UUID]:
        """The ids of those jobs still held, their leases extended."""
        return renew_all(self.services, claims)

    def release(self, held: Claim) -> None:
        release(self.services, held)

    def content(self, held: Claim) -> str | list[dict]:
        """The user message's content: its text, with references to its attachments."""
        return user_content(self.services.sessions, held.user_id, held.content, held.attachments)

    def commit_turn(self, held: Claim, turn: dict, usage: dict, cost: Decimal, ending: dict,
                    reply: dict) -> Ended | None:
        """The turn stored and its job ended, in one transaction; None if this attempt no
        longer holds the job or the conversation is gone (nothing written)."""
        with prepared(self.services.engine) as run:
            return commit_turn(run, held.conversation_id, held.job_id, held.attempt, held.user_id, turn,
                               usage, cost, ending, reply)

    def fail(self, held: Claim, error: dict, billed: ModelReply | None, cost: Decimal | None) -> Ended | None:
        """End the job failed; `billed` is a reply that stores nothing but was paid for (an
        empty one), added to the user's ledger. None if this attempt no longer holds it."""
        with self.services.sessions.begin() as session:
            job = held_job(session, held.job_id, held.attempt)
            if job is None:
                return None
            if billed:
                add_daily_usage(session, held.user_id, billed, turns=0, cost=cost)
            return job, end_job(session, job, "failed", error=error)

    def exists(self, conversation_id: uuid.UUID) -> bool:
        with one_statement(self.services.engine) as connection:
            return connection.execute(_CONVERSATION, {"id": conversation_id}).first() is not None
