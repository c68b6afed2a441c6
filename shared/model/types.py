"""The model port: what the pipeline asks (`ModelRequest`), what it gets back
(`ModelReply`) or how it failed (`ModelError`, one of ERROR_KINDS), and the few
request-building rules both providers share."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from shared.cancel import CancelToken

ERROR_KINDS = ("rate_limited", "overloaded", "model_timeout", "model_unavailable", "context_too_long",
               "invalid_request", "provider_auth", "internal", "empty_reply")


@dataclass(frozen=True)
class ModelReply:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    stop_reason: str | None = None  # as the provider sent it; shared/replies.py says what each means
    stop_details: dict | None = None  # for a refusal: {type, category, explanation}, when given
    # The assistant's content blocks in the Messages API's shape, in order (thinking, text,
    # tool_use ...), as shared/model/blocks.py assembled them from the stream.
    blocks: tuple[dict, ...] = ()
    thinking_tokens: int = 0  # the part of output_tokens spent thinking, when the provider says
    # Server tools' use beyond tokens, as the API counts it (e.g. {"web_search_requests": 2}).
    server_tool_use: dict = field(default_factory=dict)

    @property
    def usage(self) -> dict:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens}

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read, cached or not."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass(frozen=True)
class ModelRequest:
    system: str | None
    messages: list[dict]
    model: str
    max_tokens: int
    temperature: float | None = None  # Bedrock only: the Anthropic API (2026-10-21) refuses sampling parameters
    # The rolling summary of earlier turns (CONTEXT_STRATEGY=summarize), sent after the system prompt.
    summary: str | None = None
    max_retries: int | None = None  # fewer retries than the policy's, for a call that must stay short
    # The Messages API's `thinking` parameter ({"type": "enabled", "budget_tokens": n} or
    # {"type": "adaptive"}) and `output_config.effort`; None sends neither (shared/thinking.py).
    thinking: dict | None = None
    effort: str | None = None
    # Client tools ({name, description, input_schema}) and the Messages API's tool_choice (shared/tools.py).
    tools: list[dict] | None = None
    tool_choice: dict | None = None
    on_text: Callable[[str], None] | None = field(default=None, compare=False)
    on_thinking: Callable[[str], None] | None = field(default=None, compare=False)
    # A client tool call's input as the model writes it: {"id", "name", "partial_json"} per piece.
    on_tool_input: Callable[[dict], None] | None = field(default=None, compare=False)
    # Called before a retry when text of the failed attempt was already passed to on_text.
    on_reset: Callable[[], None] | None = field(default=None, compare=False)
    cancel: CancelToken | None = field(default=None, compare=False)


class ModelError(Exception):
    """A model call that failed; `kind` is one of ERROR_KINDS."""

    def __init__(self, kind: str, message: str, retryable: bool = False, retry_after: float | None = None,
                 model_gone: bool = False):
        super().__init__(message)
        self.kind, self.message, self.retryable, self.retry_after = kind, message, retryable, retry_after
        self.model_gone = model_gone  # the provider no longer serves the requested model (retired, unknown)


class ModelProvider(Protocol):
    def complete(self, request: ModelRequest) -> ModelReply: ...


# What the user is told for each kind both providers report; a kind in TRANSIENT is retried.
MESSAGES = {
    "rate_limited": "The model's rate limit was reached; try again shortly.",
    "overloaded": "The model service is overloaded; try again shortly.",
    "model_timeout": "The model did not answer in time.",
    "model_unavailable": "The model service could not be reached.",
    "provider_auth": "The model provider rejected Parley's credentials.",
    "context_too_long": "The conversation is too long for the model; lower MAX_CONTEXT_TOKENS or start a "
                        "new conversation.",
}
TRANSIENT = frozenset({"rate_limited", "overloaded", "model_timeout", "model_unavailable"})


def model_error(kind: str, message: str | None = None, retry_after: float | None = None,
                model_gone: bool = False) -> ModelError:
    """A ModelError of `kind`, retryable if the kind is transient, with the table's message by default."""
    return ModelError(kind, message or MESSAGES[kind], kind in TRANSIENT, retry_after, model_gone)


def connection_lost() -> ModelError:
    return model_error("model_unavailable", "The connection to the model service broke off.")


def retry_after_seconds(headers) -> float | None:
    try:
        return float(headers.get("retry-after")) if headers and headers.get("retry-after") else None
    except (TypeError, ValueError):
        return None


def summary_block(summary: str) -> str:
    return f"Summary of the earlier part of this conversation (its messages are no longer shown):\n{summary}"


def cache_marks(messages: list[dict]) -> set[int]:
    """The messages' one cache breakpoint: the newest message. This turn writes the prefix up
    to it; the next turn's breakpoint is two blocks further on (this reply, its own message),
    well within the 20 blocks the API looks back from a breakpoint for an entry to read. With
    the system prompt's, two of the four breakpoints a request may have. The summary gets
    none: it changes only when the window drops turns, and then the messages after it change
    too, so an entry ending there would never be read."""
    return {len(messages) - 1} if messages else set()
