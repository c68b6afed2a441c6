"""Request and response shapes; flask-openapi3 validates with them and documents them."""
from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema


_REQUEST_SCHEMAS: dict[type, dict] = {}


class Request(BaseModel):
    """A request's body, query, path or header model. flask-openapi3 asks for its JSON
    schema on every request (0.3-0.4 ms each, measured); it never changes, so build it once."""

    @classmethod
    def model_json_schema(cls, *args, **kwargs) -> dict:
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _REQUEST_SCHEMAS:
            _REQUEST_SCHEMAS[cls] = super().model_json_schema()
        return _REQUEST_SCHEMAS[cls]


class Strict(Request):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


MODEL_FIELD = "a model id from GET /v1/models; null for the deployment's default"


class ThinkingIn(Strict):
    """Extended thinking (shared/thinking.py): what GET /v1/models says the model takes."""
    type: Literal["enabled", "adaptive", "disabled"] = Field(
        description="enabled: think within budget_tokens (older models); adaptive: the model decides (newer ones)")
    budget_tokens: int | None = Field(None, ge=1024, le=128_000, description="type enabled only: thinking tokens, "
                                      "on top of MAX_TOKENS for the answer")
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = Field(
        None, description="how much effort the model spends (output_config.effort), where the model takes it")


THINKING_FIELD = "extended thinking for this conversation's replies; null (or type disabled) for none"


# Text inside a tool's or a result's fields: the server refuses NUL anywhere in a body (api/strict_json.py).
ToolText = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class ToolIn(Strict):
    """A client tool: Claude may call it; the caller runs it and POSTs the result (shared/tools.py)."""
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="unique among the tools")
    description: ToolText | None = Field(None, max_length=10_000, description="what it does, for Claude")
    input_schema: dict = Field(description="a JSON Schema with \"type\": \"object\": the call's input")


class ToolChoiceIn(Strict):
    type: Literal["auto", "any", "tool", "none"] = Field(
        description="auto: Claude decides; any: it must call one; tool: it must call `name`; none: no calls")
    name: str | None = Field(None, description="type tool only: the tool to call")
    disable_parallel_tool_use: bool | None = Field(None, description="at most one call a reply")


class ServerToolIn(Strict):
    """A server tool Claude runs itself (Anthropic API only), if SERVER_TOOLS_ALLOWED offers it."""
    type: Literal["web_search_20250305"]
    name: Literal["web_search"]
    max_uses: int | None = Field(None, ge=1, le=1000, description="searches per reply at most")
    allowed_domains: list[Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\x00\s]+$")]] | None = \
        Field(None, max_length=100, description="search only these domains")


TOOLS_FIELD = ("client tools Claude may call (at most 64, 64 KB); a call ends the job requires_action until "
               "POST /v1/jobs/{id}/tool_results answers it; null for none")
TOOL_CHOICE_FIELD = "how Claude uses the tools (the Messages API's tool_choice); null: auto"


class ConversationIn(Strict):
    name: str | None = None
    system: str | None = None
    model: str | None = Field(None, description=MODEL_FIELD)
    thinking: ThinkingIn | None = Field(None, description=THINKING_FIELD)
    tools: list[ToolIn | ServerToolIn] | None = Field(None, max_length=64, description=TOOLS_FIELD)
    tool_choice: ToolChoiceIn | None = Field(None, description=TOOL_CHOICE_FIELD)


class ConversationPatch(Strict):
    """Only the fields sent change; `system` and `model` apply from the next message on."""
    name: str | None = None
    system: str | None = None
    model: str | None = Field(None, description=MODEL_FIELD)
    thinking: ThinkingIn | None = Field(None, description=THINKING_FIELD)
    tools: list[ToolIn | ServerToolIn] | None = Field(None, max_length=64, description=TOOLS_FIELD)
    tool_choice: ToolChoiceIn | None = Field(None, description=TOOL_CHOICE_FIELD)


def _has_text(value: str) -> str:
    # The Messages API refuses an empty or whitespace-only text block: refuse it here, before it is queued.
    if not value.strip():
        raise ValueError("must contain some text, not only whitespace")
    return value


# The schema states the rule (a non-whitespace character somewhere); _has_text enforces it with a plain message.
MessageText = Annotated[str, Field(min_length=1, json_schema_extra={"pattern": r"\S"}), AfterValidator(_has_text)]


FileId = Annotated[str, Field(pattern=r"^file_[0-9a-f]{32}$", description="an id from POST /v1/files")]


class MessageIn(Strict):
    content: MessageText
    attachments: list[FileId] = Field(default_factory=list, description="files sent with the message, in "
                                      "order, as image or document blocks before its text (POST /v1/files)")
    on_busy: Literal["enqueue", "reject"] = Field(
        "enqueue", description="while the conversation has a job queued or running: wait behind it, or 409")
    callback_url: str | None = Field(None, description="POSTed the final job, signed; see /v1/webhook-secret")
    thinking: ThinkingIn | None = Field(None, description="this message only: overrides the conversation's thinking")
    tools: list[ToolIn | ServerToolIn] | None = Field(None, max_length=64, description="this message (and its tool rounds) only: "
                                       "overrides the "
                                       "conversation's tools; [] for none")
    tool_choice: ToolChoiceIn | None = Field(None, description="with tools: this message's tool_choice")


class IdempotencyHeader(Request):
    idempotency_key: str | None = Field(None, alias="Idempotency-Key", max_length=200, pattern=r"^[^\x00]*$")


class ConversationPath(Request):
    conversation_id: str


class JobPath(Request):
    job_id: str


class ListQuery(Strict):
    limit: int = Field(20, ge=1)
    cursor: str | None = None


class WaitQuery(Strict):
    wait: float = Field(0, ge=0)


class EventsQuery(Strict):
    after: int | None = Field(None, ge=0, le=10**15, description="resume after this event id")


class Summary(BaseModel):
    text: str
    through_message: int = Field(description="the summary covers messages 1 to this seq")


class ForkOrigin(BaseModel):
    conversation_id: str = Field(description="the conversation this one was forked from (it may since be deleted)")
    seq: int = Field(description="the reply seq it was forked at: this conversation began with its messages 1..seq")


class Conversation(BaseModel):
    id: str
    name: str | None
    system: str | None
    model: str = Field(description="the model that answers this conversation")
    thinking: dict | None = Field(None, description="its extended thinking setting (ThinkingIn); null when off")
    tools: list[dict] | None = Field(None, description="its client tools (ToolIn); null for none")
    tool_choice: dict | None = Field(None, description="its tool_choice (ToolChoiceIn); null: auto")
    summary: Summary | None = Field(None, description="CONTEXT_STRATEGY=summarize: what the model is told "
                                    "about messages that no longer fit its context window")
    message_count: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = Field(0.0, description="estimated from the tokens and the model's prices, summaries included")
    cache_hit_ratio: float | None = Field(None, description="prompt tokens read from Claude's prompt cache, of all "
                                          "prompt tokens; null before the first reply")
    created_at: str
    updated_at: str
    forked_from: ForkOrigin | None = Field(None, description="set on a fork (POST .../fork, edit, regenerate)")


class ModelThinking(BaseModel):
    types: list[Literal["enabled", "adaptive"]] = Field(description="thinking types it accepts; empty: none")
    efforts: list[str] = Field(description="effort levels it accepts")


class ModelStatus(BaseModel):
    id: str
    lifecycle: Literal["active", "deprecated", "retired", "unknown"] = Field(
        description="as the provider's model list says; unknown when it could not be read")
    retires_at: str | None = Field(None, description="YYYY-MM-DD, for a deprecated model with a retirement date")
    display_name: str | None = None
    thinking: ModelThinking | None = Field(None, description="what the model takes; null when the provider did not say")


class ModelList(BaseModel):
    default: str
    data: list[str]
    models: list[ModelStatus] = Field(description="each model of `data`, with its lifecycle")


class Message(BaseModel):
    seq: int = Field(description="the message's number in its conversation: 1, 2, …; turn n holds 2n-1 and 2n")
    role: Literal["user", "assistant"]
    content: str | list[dict] = Field(description="text; content blocks (Messages API shape) when it has more than "
                                      "text, e.g. a reply's thinking blocks with include=thinking")
    created_at: str
    job_id: str = Field(description="the job whose turn wrote this message")
    outcome: Literal["complete", "truncated", "refused"] = Field(
        "complete", description="refused: Claude declined this exchange; it is shown here but never sent to "
        "Claude again. truncated: the reply was cut short")


class ConversationWithMessages(Conversation):
    messages: list[Message]


INCLUDE_FIELD = "thinking: replies keep their thinking blocks (with signatures); left out otherwise"


class ReadQuery(Strict):
    include: Literal["thinking"] | None = Field(None, description=INCLUDE_FIELD)


class MessagesQuery(Strict):
    include: Literal["thinking"] | None = Field(None, description=INCLUDE_FIELD)
    limit: int = Field(20, ge=1, description="at most MAX_PAGE_SIZE")
    order: Literal["desc", "asc"] = Field("desc", description="desc: newest first (a chat view); asc: oldest first")
    before: str | None = Field(None, description="a cursor: only messages older than it")
    after: str | None = Field(None, description="a cursor: only messages newer than it")


class MessagePage(BaseModel):
    data: list[Message]
    has_more: bool = Field(description="more messages lie beyond the last one, in this order")
    first_cursor: str | None = Field(description="the first message's cursor")
    last_cursor: str | None = Field(description="the last message's cursor: the next page is before= it "
                                                "(order=desc) or after= it (order=asc)")


class ConversationPage(BaseModel):
    data: list[Conversation]
    next_cursor: str | None


# Attachments (api/files.py).


class FileOut(BaseModel):
    id: str = Field(description="file_…; attach it with POST .../messages {\"attachments\": [id]}")
    name: str
    media_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain",
                        "text/markdown", "text/csv", "application/json"] = Field(
        description="judged from the bytes, never from the client's content type")
    kind: Literal["image", "document"] = Field(description="the content block it becomes")
    size_bytes: int
    sha256: str
    width: int | None = Field(None, description="images: pixels")
    height: int | None = None
    pages: int | None = Field(None, description="PDFs")
    token_estimate: int = Field(description="what it adds to the context window until the model counts it")
    created_at: str


class FilePage(BaseModel):
    data: list[FileOut]
    next_cursor: str | None


class FilePath(Request):
    file_id: str


class FileDeleteQuery(Strict):
    force: bool = Field(False, description="delete even if a conversation's context window still sends it")


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float | None = Field(None, description="estimated from these tokens and the model's prices")
    thinking_tokens: int | None = Field(None, description="of output_tokens (priced as output), those spent "
                                        "thinking, when the provider says")


def _iso_day(value: object) -> object:
    """YYYY-MM-DD and nothing else: pydantic alone also reads `0` as 1970-01-01."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day), WithJsonSchema({"type": "string", "format": "date"})]


class UsageQuery(Strict):
    from_: Day | None = Field(None, alias="from", description="first UTC day, YYYY-MM-DD (default: 30 days before `to`)")
    to: Day | None = Field(None, description="last UTC day, inclusive, YYYY-MM-DD (default: today)")


class UsageDay(BaseModel):
    day: str
    turns: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: float = Field(description="estimated from the tokens and each model's prices")


class UsageReport(BaseModel):
    from_: str = Field(alias="from")
    to: str
    totals: UsageDay
    days: list[UsageDay]


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


# Forks (api/forks.py). A seq is a message seq, as GET .../messages shows: turn n holds 2n-1 and 2n.


class ForkIn(Strict):
    at_seq: int = Field(ge=0, le=10**9, description="a reply's seq (even): the fork holds messages 1..at_seq; "
                        "0 for a fork with no messages")
    name: str | None = Field(None, description="the fork's name; the original's by default")


class MessageSeqPath(Request):
    conversation_id: str
    seq: int = Field(ge=1, le=10**9, description="a message seq as GET .../messages shows it (turn n holds 2n-1 "
                     "and 2n): for edit a user message (odd), for regenerate either message of the turn")


class EditIn(Strict):
    content: MessageText = Field(description="replaces the user message at seq, in a new fork")
    attachments: list[FileId] = Field(default_factory=list, description="files sent with the edited message "
                                      "(POST /v1/files); the original message's are not carried over")
    name: str | None = Field(None, description="the fork's name; the original's by default")
    callback_url: str | None = Field(None, description="POSTed the final job, signed; see /v1/webhook-secret")


class RegenerateIn(Strict):
    name: str | None = Field(None, description="the fork's name; the original's by default")
    callback_url: str | None = Field(None, description="POSTed the final job, signed; see /v1/webhook-secret")


class ForkedJob(BaseModel):
    conversation: Conversation = Field(description="the new fork, holding the turns before seq")
    job: Job = Field(description="the message's job in the fork")


# The seed's endpoints: lenient, as its users' curl commands were.
class ChatIn(Strict):
    user_input: MessageText
    conversation_name: str | None = None
    conversation_id: str | None = None


class ChatOut(BaseModel):
    conversation_id: str
    job_id: str
    response: str


class ChatPending(BaseModel):
    conversation_id: str
    job_id: str
    job: Job


class NewChatOut(BaseModel):
    conversation_id: str


class SeedConversationQuery(Request):
    conversation_id: str | None = Field(None, min_length=1, description="here, or in the JSON body")


class SeedConversationGetQuery(Request):
    conversation_id: str = Field(min_length=1)


class NewChatIn(Strict):
    conversation_name: str | None = None


class SeedConversationBody(Strict):
    conversation_id: str = Field(min_length=1)


class SeedMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class SeedConversation(BaseModel):
    conversation_id: str
    conversation_name: str | None
    messages: list[SeedMessage]


class Health(BaseModel):
    status: str
    checks: dict[str, str] | None = None
