"""PostgreSQL tables. The seed's conversation column names are kept."""
from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, get_args

from sqlalchemy import (
    BigInteger, Boolean, CheckConstraint, Date, DateTime, ForeignKey, Identity, Index, Integer, Numeric, Text,
    UniqueConstraint, func, text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "requires_action"]
FinalStatus = Literal["succeeded", "failed", "cancelled", "requires_action"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
WEBHOOK_STATUSES = ("pending", "delivered", "failed")
# requires_action is final for its job (events, long-polls and webhooks end there), but until
# its tool calls are answered (`continued_by` set) its conversation waits: see shared/tools.py.
FINAL_STATUSES: tuple[FinalStatus, ...] = get_args(FinalStatus)
ACTIVE_STATUSES: tuple[JobStatus, ...] = ("queued", "running")


def _now_column() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def _cost_column() -> Mapped[Decimal]:
    """An estimate in USD (tokens x shared/pricing.py's prices), exact when summed."""
    return mapped_column(Numeric(18, 8), default=0, server_default="0")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text, unique=True)
    # The seed's /chat continues "the user's current conversation".
    current_conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.conversation_id", ondelete="SET NULL", use_alter=True,
                                       name="fk_users_current_conversation"), nullable=True)
    # Signs webhook deliveries (HMAC-SHA256); made on first use, shown to its user only.
    webhook_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _now_column()


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)  # sha256 hex; the key itself is never stored
    prefix: Mapped[str] = mapped_column(Text)  # first characters, to tell keys apart in listings
    created_at: Mapped[datetime] = _now_column()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Conversation(Base):
    __tablename__ = "conversations"
    conversation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    s3_file_location: Mapped[str] = mapped_column(Text)  # the log's prefix in object storage
    system: Mapped[str | None] = mapped_column(Text, nullable=True)
    turn_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    message_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_creation_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_read_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    model: Mapped[str | None] = mapped_column(Text, nullable=True)  # one of ALLOWED_MODELS; default if None
    # Extended thinking for its replies (shared/thinking.py), checked against the model when set; None: off.
    thinking: Mapped[dict | None] = mapped_column(JSONB(none_as_null=True), nullable=True)
    # CONTEXT_STRATEGY=summarize: the model's summary of turns 1..summary_seq.
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_usd: Mapped[Decimal] = _cost_column()  # every model call's, summaries included
    # Client tools offered to Claude (shared/tools.py checks them) and the API's tool_choice.
    tools: Mapped[list | None] = mapped_column(JSONB(none_as_null=True), nullable=True)
    tool_choice: Mapped[dict | None] = mapped_column(JSONB(none_as_null=True), nullable=True)
    # A fork holds copies of turns 1..forked_from_turn of forked_from_id; no foreign key,
    # so it outlives that conversation. Its log objects are written after the fork is made
    # (worker/forks.py); until then `log_copy_pending` and the rows' entries serve reads.
    forked_from_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    forked_from_turn: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_copy_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()

    __table_args__ = (
        Index("ix_conversations_user_recent", "user_id", "created_at", "conversation_id"),
        Index("ix_conversations_forks", "forked_from_id", "created_at", "conversation_id",
              postgresql_where="forked_from_id IS NOT NULL"),
        Index("ix_conversations_log_copy_pending", "created_at", postgresql_where="log_copy_pending"),
    )


class Turn(Base):
    """One user message and its reply. The log in object storage is the verbatim record;
    `entry` is the same log entry kept here for reading (history pages, window rebuilds),
    None for turns written before it was kept."""
    __tablename__ = "turns"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.conversation_id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    # The job that wrote the turn; a fork's copy keeps it, so unique per conversation only.
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    log_key: Mapped[str] = mapped_column(Text)
    user_tokens: Mapped[int] = mapped_column(Integer)
    assistant_tokens: Mapped[int] = mapped_column(Integer)
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cache_creation_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_read_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_usd: Mapped[Decimal] = _cost_column()
    # The first turn of the context window after this turn: where a rebuilt window starts.
    window_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    entry: Mapped[dict | None] = mapped_column(JSONB(none_as_null=True), nullable=True)
    created_at: Mapped[datetime] = _now_column()

    __table_args__ = (UniqueConstraint("conversation_id", "seq", name="uq_turns_conversation_seq"),
                      UniqueConstraint("job_id", "conversation_id", name="uq_turns_job_conversation"))


USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class UsageDaily(Base):
    """Tokens per user per UTC day; kept when conversations are deleted."""
    __tablename__ = "usage_daily"
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    turns: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_creation_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cache_read_input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    cost_usd: Mapped[Decimal] = _cost_column()


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # Global submit order; turns of one conversation run in this order.
    position: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.conversation_id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(Text, default="queued", server_default="queued")
    request: Mapped[dict] = mapped_column(JSONB)
    reply: Mapped[dict | None] = mapped_column(JSONB, nullable=True)
    error: Mapped[dict | None] = mapped_column(JSONB, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # claims, hand-backs included
    takeovers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # claims after a worker died
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = _now_column()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(Text, nullable=True)  # the Celery node that last claimed it
    # Webhook delivery of the final job, retried until `webhook_next_at` passes the window.
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_status: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_attempts: Mapped[list] = mapped_column(JSONB, default=list, server_default=text("'[]'::jsonb"))
    webhook_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # status requires_action: {"tool_calls": [{id, name, input}]}; `continued_by` is the job
    # that carries their results (the caller's, or an error result on cancel or timeout).
    required_action: Mapped[dict | None] = mapped_column(JSONB(none_as_null=True), nullable=True)
    continued_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)

    __table_args__ = (
        CheckConstraint(f"status IN {JOB_STATUSES}", name="ck_jobs_status"),
        CheckConstraint(f"webhook_status IS NULL OR webhook_status IN {WEBHOOK_STATUSES}",
                        name="ck_jobs_webhook_status"),
        Index("ix_jobs_webhook_due", "webhook_next_at", postgresql_where="webhook_status = 'pending'"),
        UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_idempotency_key"),
        Index("ix_jobs_conversation_active", "conversation_id", "position",
              postgresql_where="status IN ('queued', 'running')"),
        Index("ix_jobs_user_created", "user_id", "created_at"),
        Index("ix_jobs_conversation", "conversation_id"),
        Index("ix_jobs_awaiting_tools", "finished_at",
              postgresql_where="status = 'requires_action' AND continued_by IS NULL"),
    )


class File(Base):
    """An uploaded attachment; its bytes live in object storage at `storage_key`
    (users/{user_id}/files/{id}), its facts here, judged from the bytes (shared/media.py)."""
    __tablename__ = "files"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    media_type: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)  # image or document: the content block it becomes
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pages: Mapped[int | None] = mapped_column(Integer, nullable=True)
    token_estimate: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(Text)
    # ANTHROPIC_FILES_API=true: the Files API's id for these bytes, uploaded on first use.
    anthropic_file_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _now_column()

    __table_args__ = (CheckConstraint("kind IN ('image', 'document')", name="ck_files_kind"),
                      Index("ix_files_user_recent", "user_id", "created_at", "id"))


class MessageFile(Base):
    """A file attached to a job's user message: what keeps a file from being deleted
    while a conversation's window still sends it. No foreign key to the job: a fork's
    copied turns keep the job id of the turn they copy, so the reference must outlive the
    job (deleted with its conversation) for as long as any fork's turn names it. Goes
    with the file."""
    __tablename__ = "message_files"
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)

    __table_args__ = (Index("ix_message_files_file", "file_id"),)
