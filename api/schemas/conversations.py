"""Conversations, their messages and forks, and the models they may use."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from api.schemas.base import FileId, MessageText, Request, Strict, ToolText
from api.schemas.jobs import Job

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
    type: Literal["web_search_20260318", "web_search_20260209", "web_search_20250305"] = Field(
        description="web_search_20260318 is the current version")
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


class ConversationPatch(ConversationIn):
    """Only the fields sent change; `system` and `model` apply from the next message on."""


class MessageIn(Strict):
    content: MessageText
    attachments: list[FileId] = Field(default_factory=list, description="files sent with the message, in "
                                      "order, as image or document blocks before its text (POST /v1/files)")
    on_busy: Literal["enqueue", "reject"] | None = Field(
        None, description="while the conversation has a job queued or running: wait behind it (unset or enqueue) "
                          "or 409 conversation_busy (reject); while it waits for tool results: 409 "
                          "tool_results_required unless enqueue, which waits behind the results")
    callback_url: str | None = Field(None, description="POSTed the final job, signed; see /v1/webhook-secret")
    thinking: ThinkingIn | None = Field(None, description="this message only: overrides the conversation's thinking")
    tools: list[ToolIn | ServerToolIn] | None = Field(
        None, max_length=64, description="this message (and its tool rounds) only: overrides the conversation's "
                                         "tools; [] for none")
    tool_choice: ToolChoiceIn | None = Field(None, description="with tools: this message's tool_choice")


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
