"""Model providers: how a window becomes a reply."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass(frozen=True)
class ModelReply:
    text: str
    model: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ModelRequest:
    system: str | None
    messages: list[dict]
    model: str
    max_tokens: int
    on_text: Callable[[str], None] | None = field(default=None, compare=False)


class ModelError(Exception):
    """A model call that failed; `kind` is one of the job error types."""

    def __init__(self, kind: str, message: str, retryable: bool = False):
        super().__init__(message)
        self.kind, self.message, self.retryable = kind, message, retryable


class ModelProvider(Protocol):
    def complete(self, request: ModelRequest) -> ModelReply: ...


class AnthropicProvider:
    """The Messages API through the official SDK, streamed so text arrives as it is made."""

    def __init__(self, api_key: str, base_url: str | None, timeout: float, max_retries: int):
        import anthropic

        self._anthropic = anthropic
        self.client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)

    def complete(self, request: ModelRequest) -> ModelReply:
        params = {"model": request.model, "max_tokens": request.max_tokens, "messages": request.messages}
        if request.system:
            params["system"] = request.system
        try:
            with self.client.messages.stream(**params) as stream:
                for text in stream.text_stream:
                    if request.on_text:
                        request.on_text(text)
                final = stream.get_final_message()
        except self._anthropic.APIError as error:
            raise _classify(self._anthropic, error) from error
        text = "".join(block.text for block in final.content if block.type == "text")
        return ModelReply(text, final.model, final.usage.input_tokens, final.usage.output_tokens)


def _classify(anthropic, error) -> ModelError:
    if isinstance(error, anthropic.APITimeoutError):
        return ModelError("model_timeout", "The model did not answer in time.", retryable=True)
    if isinstance(error, anthropic.APIConnectionError):
        return ModelError("model_unavailable", "The model service could not be reached.", retryable=True)
    status = getattr(error, "status_code", None)
    message = getattr(error, "message", str(error))
    if status == 429:
        return ModelError("rate_limited", "The model's rate limit was reached; try again shortly.", True)
    if status == 529 or "overloaded" in str(message).lower():
        return ModelError("overloaded", "The model service is overloaded; try again shortly.", True)
    if status in (401, 403):
        return ModelError("provider_auth", "The model provider rejected Parley's credentials.")
    if status == 400 and "prompt is too long" in str(message).lower():
        return ModelError("context_too_long", "The conversation is too long for the model.")
    if status is not None and status >= 500:
        return ModelError("model_unavailable", f"The model service failed ({status}).", True)
    if status is not None and 400 <= status < 500:
        return ModelError("invalid_request", f"The model rejected the request: {message}")
    return ModelError("internal", f"Model call failed: {message}")
