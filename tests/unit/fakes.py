"""Fakes at the worker's ports, in memory, for checking the pipeline's decisions with no
I/O: the job and turn records (worker/records.py's port to PostgreSQL), the log store, the
event bus, the window cache, the model provider and the task dispatcher. Each keeps the
rule of the real part that the pipeline relies on and nothing more; the real parts are
checked against the real services in tests/integration and tests/faults."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

from shared.bootstrap import Services
from shared.cancel import Cancelled
from shared.config import Settings
from shared.events import FINAL_EVENTS
from shared.jobs import Claim, new_job
from shared.memory import ConversationMemory
from shared.model import ModelError, ModelReply, ModelRequest
from shared.models import Conversation, Job
from shared.storage import StorageUnavailable, conversation_prefix

MODEL = "claude-sonnet-5-5"


class FakeRecords:
    """Jobs, conversations and turns as PostgreSQL holds them for the pipeline: a claim
    takes a queued job and counts an attempt; renew, commit and fail hold only for the
    attempt that is still running; a job ends once, and its conversation's next queued
    job is named. `taken` makes the next claim's fence fail (another attempt took it)."""

    lease_seconds = 30

    def __init__(self):
        self.conversations: dict[uuid.UUID, Conversation] = {}
        self.jobs: dict[uuid.UUID, Job] = {}
        self.turns: list[dict] = []
        self.usage: list[dict] = []  # billed replies that stored nothing
        self.released: list[uuid.UUID] = []
        self.claim_error: Exception | None = None

    def conversation_for(self, user_id: uuid.UUID, **fields) -> Conversation:
        conversation_id = uuid.uuid4()
        conversation = Conversation(conversation_id=conversation_id, user_id=user_id, turn_count=0, system=None,
                                    model=None, thinking=None, tools=None, tool_choice=None, summary=None,
                                    s3_file_location=conversation_prefix(user_id, conversation_id), **fields)
        self.conversations[conversation_id] = conversation
        return conversation

    def submit(self, conversation: Conversation, content: str) -> str:
        job = new_job(conversation.user_id, conversation.conversation_id, {"content": content}, None, None)
        job.attempts, job.created_at, job.required_action, job.continued_by = 0, datetime.now(timezone.utc), None, None
        self.jobs[job.id] = job
        return str(job.id)

    def _held(self, held: Claim) -> Job | None:
        job = self.jobs.get(held.job_id)
        return job if job is not None and job.status == "running" and job.attempts == held.attempt else None

    def claim(self, job_id: uuid.UUID, worker: str | None) -> Claim | None:
        if self.claim_error:
            raise self.claim_error
        job = self.jobs.get(job_id)
        if job is None or job.status != "queued":
            return None
        job.status, job.attempts, job.worker = "running", job.attempts + 1, worker
        return Claim(job.id, job.user_id, job.conversation_id, job.request["content"], job.attempts,
                     job.created_at, request=job.request, conversation=self.conversations.get(job.conversation_id))

    def take_over(self, job_id: str) -> None:
        """Another worker's claim after this one's lease ran out."""
        self.jobs[uuid.UUID(job_id)].attempts += 1

    def lease_left(self, job_id: uuid.UUID) -> float | None:
        job = self.jobs.get(job_id)
        return self.lease_seconds if job is not None and job.status == "running" else None

    def renew(self, held: Claim) -> bool:
        return self._held(held) is not None

    def renew_all(self, claims: list[Claim]) -> set[uuid.UUID]:
        return {claim.job_id for claim in claims if self._held(claim) is not None}

    def release(self, held: Claim) -> None:
        if job := self._held(held):
            job.status = "queued"
            self.released.append(job.id)

    def content(self, held: Claim) -> str | list[dict]:
        return held.content

    def _end(self, job: Job, status: str, **fields) -> tuple[Job, str | None]:
        job.status, job.finished_at = status, datetime.now(timezone.utc)
        for name, value in fields.items():
            setattr(job, name, value)
        waiting = [j for j in self.jobs.values() if j.conversation_id == job.conversation_id
                   and j.status in ("queued", "running")]
        return job, str(waiting[0].id) if waiting and waiting[0].status == "queued" else None

    def commit_turn(self, held: Claim, turn: dict, usage: dict, cost: Decimal, ending: dict, reply: dict):
        job, conversation = self._held(held), self.conversations.get(held.conversation_id)
        if job is None or conversation is None:
            return None
        self.turns.append({**turn, "conversation_id": held.conversation_id, "usage": usage, "cost": cost})
        conversation.turn_count = turn["seq"]
        return self._end(job, ending["status"], reply=reply, error=None,
                         required_action=ending.get("required_action"))

    def fail(self, held: Claim, error: dict, billed: ModelReply | None, cost: Decimal | None):
        job = self._held(held)
        if job is None:
            return None
        if billed:
            self.usage.append({"user_id": held.user_id, **billed.usage, "cost": cost})
        return self._end(job, "failed", error=error, reply=None, required_action=None)

    def exists(self, conversation_id: uuid.UUID) -> bool:
        return conversation_id in self.conversations


class FakeStore:
    """The log store as a dict; `down` makes every call raise as an unreachable store does."""

    def __init__(self):
        self.objects: dict[str, dict] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StorageUnavailable("the log store is unreachable")

    def put(self, key: str, entry: dict) -> None:
        self._check()
        self.objects[key] = entry

    def get(self, key: str) -> dict | None:
        self._check()
        return self.objects.get(key)

    def delete_prefix(self, prefix: str) -> None:
        self._check()
        for key in [key for key in self.objects if key.startswith(prefix)]:
            del self.objects[key]


class FakeEvents:
    """The job event bus: events in order per job; nothing is added after a job's final
    event (`add` returns None then, as JobEvents does)."""

    def __init__(self):
        self.by_job: dict[str, list[tuple[str, dict]]] = {}

    def add(self, job_id: object, type_: str, data: dict | None = None) -> int | None:
        events = self.by_job.setdefault(str(job_id), [])
        if events and events[-1][0] in FINAL_EVENTS:
            return None
        events.append((type_, data or {}))
        return len(events)

    def types(self, job_id: object) -> list[str]:
        return [type_ for type_, _ in self.by_job.get(str(job_id), [])]


class FakeWindows:
    """The window cache: a new conversation's empty window is current, as a cached one is."""

    def __init__(self, settings: Settings):
        self.settings, self.saved = settings, {}

    def get(self, conversation_id: object) -> ConversationMemory | None:
        return self.saved.get(conversation_id) or ConversationMemory(
            self.settings.max_context_tokens, turn_seq=0, low_water=self.settings.window_low_water)

    def put(self, conversation_id: object, memory: ConversationMemory) -> None:
        self.saved[conversation_id] = memory


Step = ModelReply | ModelError | Callable[[ModelRequest], ModelReply]


@dataclass
class ScriptedProvider:
    """The model: each call takes the next step, a reply (its text streamed in two pieces
    through the request's callbacks), an error to raise, or a function of the request."""
    steps: list[Step] = field(default_factory=list)
    requests: list[ModelRequest] = field(default_factory=list)

    def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, ModelError):
            raise step
        if callable(step):
            return step(request)
        half = len(step.text) // 2
        for piece in (step.text[:half], step.text[half:]):
            if request.cancel.cancelled:
                raise Cancelled()
            if piece:
                request.on_text(piece)
        return step


def reply(text: str = "Hello there.", stop_reason: str = "end_turn", **fields) -> ModelReply:
    blocks = ({"type": "text", "text": text},) if text else ()
    return ModelReply(text=text, model=MODEL, input_tokens=12, output_tokens=5, stop_reason=stop_reason,
                      blocks=blocks, **fields)


class RecordingDispatcher:
    """Stands in for Celery when the pipeline runs in a test: remembers what it would send."""

    def __init__(self):
        self.turns: list[str] = []
        self.webhooks: list[str] = []

    def turn(self, job_id: object) -> None:
        self.turns.append(str(job_id))

    def webhook(self, job_id: object, countdown: float | None = None) -> None:
        self.webhooks.append(str(job_id))


def fake_services(**settings) -> Services:
    """Services with fakes at every port the pipeline uses, and no engine, session factory or
    Redis client at all: a pipeline that reached for one would fail, not do I/O."""
    values = Settings(_env_file=None, default_model=MODEL, allowed_models=MODEL, **settings)
    return Services(settings=values, engine=None, sessions=None, redis=None, windows=FakeWindows(values),
                    events=FakeEvents(), store=FakeStore(), provider=ScriptedProvider())
