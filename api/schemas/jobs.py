"""Jobs: the request, the reply, tool calls and their results, webhooks."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.base import ErrorBody, Strict, ToolText
from api.schemas.usage import Usage

class Reply(BaseModel):
    role: Literal["assistant"]
    content: str
    model: str
    stop_reason: str | None = Field(None, description="as Claude sent it: end_turn, max_tokens, refusal, "
                                    "model_context_window_exceeded, ... (Bedrock: guardrail_intervened, ...)")
    stop_details: dict | None = Field(None, description="for a refusal, when given: {type, category, explanation}")
    outcome: Literal["complete", "truncated", "refused"] = Field(
        "complete", description="truncated: cut short, ask for the rest in a new message; refused: kept in the "
        "history but never sent to Claude again")
    notice: str | None = Field(None, description="what to tell the user about a refused message")
    blocks: list[dict] | None = Field(None, description="the reply's content blocks in the Messages API's shape "
                                      "(thinking with its signature, then text), when it has more than text")
    usage: Usage


class JobRequest(BaseModel):
    content: str | list[dict] = Field(description="the message; a continuation's: its tool_result blocks")
    continues: str | None = Field(None, description="a continuation: the job whose tool calls it answers")
    attachments: list[str] | None = Field(None, description="the message's file ids, when it had any")
    thinking: dict | None = Field(None, description="this message's own thinking setting, when it had one")


class WebhookAttempt(BaseModel):
    attempt: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class Webhook(BaseModel):
    url: str
    status: Literal["waiting", "pending", "delivered", "failed"]
    attempts: list[WebhookAttempt]


class WebhookSecret(BaseModel):
    secret: str
    algorithm: str = "HMAC-SHA256 over '{Parley-Timestamp}.{body}', hex, header Parley-Signature: v1=<hex>"


class ToolCall(BaseModel):
    id: str = Field(description="answer it with this id as tool_call_id")
    name: str
    input: dict = Field(description="the arguments, valid for the tool's input_schema")


class RequiredAction(BaseModel):
    type: Literal["tool_calls"]
    tool_calls: list[ToolCall]
    continued_by: str | None = Field(description="the continuation job carrying their results; null while waiting")


class ToolResultText(Strict):
    type: Literal["text"]
    text: ToolText


class ToolResultIn(Strict):
    tool_call_id: ToolText = Field(max_length=200)
    content: ToolText | list[ToolResultText] = Field(description="what the tool returned, for Claude")
    is_error: bool = Field(False, description="the call failed; `content` says how")


class ToolResultsIn(Strict):
    results: list[ToolResultIn] = Field(min_length=1, max_length=64, description="one per call of the job")


class Job(BaseModel):
    id: str
    conversation_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled", "requires_action"] = Field(
        description="requires_action: the reply called client tools; POST .../tool_results answers them")
    request: JobRequest
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int
    reply: Reply | None
    error: ErrorBody | None
    webhook: Webhook | None = None
    required_action: RequiredAction | None = Field(None, description="status requires_action: the calls to answer")


class JobEnvelope(BaseModel):
    job: Job
