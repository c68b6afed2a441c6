"""Model providers: how a window becomes a reply.

Retries live in one layer, `RetryingProvider`: the SDK's and botocore's own
retries are off, and a Celery retry never repeats a model call that failed.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

log = logging.getLogger("parley.model")

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

    @property
    def usage(self) -> dict:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens}

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read, cached or not."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class Cancelled(Exception):
    """The job ended elsewhere (it was cancelled) while the model was answering."""


class CancelToken:
    """Set from another thread to stop a model call: the open stream is closed at once."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True if cancelled meanwhile."""
        return self._event.wait(seconds)

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                pass  # the stream may already be closed

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return
        callback()


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
    on_text: Callable[[str], None] | None = field(default=None, compare=False)
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


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    budget_seconds: float = 300.0  # all attempts and waits of one reply
    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Capped exponential backoff with full jitter; never sooner than the server asked."""
        backoff = random.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** retry))
        return max(backoff, min(retry_after or 0.0, self.cap_seconds * 4))


class RetryingProvider:
    """Retries transient failures (429, 529, 5xx, timeouts, resets, errors inside a
    started stream) within a time budget; permanent ones fail at once."""

    def __init__(self, inner: ModelProvider, policy: RetryPolicy):
        self.inner, self.policy = inner, policy

    def complete(self, request: ModelRequest) -> ModelReply:
        cancel = request.cancel or CancelToken()
        max_retries = (self.policy.max_retries if request.max_retries is None
                       else min(request.max_retries, self.policy.max_retries))
        started, retry = time.monotonic(), 0
        while True:
            emitted = False

            def on_text(text: str) -> None:
                nonlocal emitted
                emitted = True
                if request.on_text:
                    request.on_text(text)

            attempt = replace(request, on_text=on_text, on_reset=None, cancel=cancel)
            try:
                return self.inner.complete(attempt)
            except ModelError as error:
                if not error.retryable or retry >= max_retries:
                    raise
                delay = self.policy.delay(retry, error.retry_after)
                if time.monotonic() - started + delay > self.policy.budget_seconds:
                    raise ModelError(error.kind, f"{error.message} (gave up after {retry + 1} attempts)") from error
                log.warning("model call failed (%s), retry %s in %.1fs", error.kind, retry + 1, delay)
                if emitted and request.on_reset:
                    request.on_reset()
                if cancel.wait(delay):
                    raise Cancelled() from error
                retry += 1


def _connection_lost() -> ModelError:
    return ModelError("model_unavailable", "The connection to the model service broke off.", retryable=True)


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("retry-after")) if headers and headers.get("retry-after") else None
    except (TypeError, ValueError):
        return None


class AnthropicProvider:
    """The Messages API through the official SDK, streamed so text arrives as it is made.

    The system prompt and the newest message carry `cache_control` (see `_cache_marks`),
    so the next turn of the conversation reads everything before its new message from
    the prompt cache. `cache_ttl` is PROMPT_CACHE_TTL.
    """

    def __init__(self, api_key: str, base_url: str | None, timeout: float, cache_ttl: str = "5m"):
        self.cache_ttl = cache_ttl
        import anthropic
        import httpx2

        self._anthropic = anthropic
        self._transport_errors = httpx2.TransportError
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)

    def complete(self, request: ModelRequest) -> ModelReply:
        params = {"model": request.model, "max_tokens": request.max_tokens,
                  "messages": _anthropic_messages(request.messages, self.cache_ttl)}
        if request.system:
            params["system"] = [{"type": "text", "text": request.system,
                                 "cache_control": _cache_control(self.cache_ttl)}]
        if request.summary:
            params["system"] = [*params.get("system", []), {"type": "text", "text": summary_block(request.summary)}]
        cancel = request.cancel or CancelToken()
        reply = _StreamedReply()
        try:
            # The raw event stream, not the SDK's `messages.stream` helper: that one rebuilds
            # a snapshot of the whole message on every event, which cost the worker ~3 ms of
            # CPU a reply (measured); only the text and the usage are needed here.
            with self.client.messages.create(**params, stream=True) as stream:
                cancel.on_cancel(stream.close)
                for event in stream:
                    if cancel.cancelled:
                        raise Cancelled()
                    if (text := reply.take(event)) and request.on_text:
                        request.on_text(text)
        except Cancelled:
            raise
        except Exception as error:
            if cancel.cancelled:  # the stream was closed under the reader
                raise Cancelled() from error
            if isinstance(error, self._anthropic.APIError):
                raise _classify_anthropic(self._anthropic, error) from error
            if isinstance(error, self._transport_errors):  # the SDK lets a connection lost mid-stream through
                raise _connection_lost() from error
            raise
        return reply.finish(request.model)


class _StreamedReply:
    """A Messages API reply read off its stream events."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.model: str | None = None
        self.usage: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.stop_details: dict | None = None
        self.complete = False

    def take(self, event) -> str | None:
        """Fold one event in; the text it adds, if any."""
        if event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                self.parts.append(event.delta.text)
                return event.delta.text
        elif event.type == "message_start":
            self.model = event.message.model
            self._count(event.message.usage)
        elif event.type == "message_delta":  # usage here is cumulative: it replaces message_start's
            self.stop_reason = event.delta.stop_reason
            if details := getattr(event.delta, "stop_details", None):
                self.stop_details = details.model_dump() if hasattr(details, "model_dump") else dict(details)
            self._count(event.usage)
        elif event.type == "message_stop":
            self.complete = True
        return None

    def _count(self, usage) -> None:
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = getattr(usage, name, None)
            if value is not None:
                self.usage[name] = value

    def finish(self, model: str) -> ModelReply:
        if not self.complete:  # the stream ended without message_stop: the connection was cut
            raise _connection_lost()
        usage = self.usage
        return ModelReply("".join(self.parts), self.model or model, usage.get("input_tokens", 0),
                          usage.get("output_tokens", 0), usage.get("cache_creation_input_tokens", 0),
                          usage.get("cache_read_input_tokens", 0), self.stop_reason, self.stop_details)


def summary_block(summary: str) -> str:
    return f"Summary of the earlier part of this conversation (its messages are no longer shown):\n{summary}"


def _cache_marks(messages: list[dict]) -> set[int]:
    """The messages' one cache breakpoint: the newest message. This turn writes the prefix up
    to it; the next turn's breakpoint is two blocks further on (this reply, its own message),
    well within the 20 blocks the API looks back from a breakpoint for an entry to read. With
    the system prompt's, two of the four breakpoints a request may have. The summary gets
    none: it changes only when the window drops turns, and then the messages after it change
    too, so an entry ending there would never be read."""
    return {len(messages) - 1} if messages else set()


def _cache_control(ttl: str) -> dict:
    return {"type": "ephemeral", **({"ttl": ttl} if ttl != "5m" else {})}  # 5m is the API's default


def _anthropic_messages(messages: list[dict], ttl: str = "5m") -> list[dict]:
    marked = _cache_marks(messages)
    return [{"role": m["role"], "content": [{"type": "text", "text": m["content"],
                                             **({"cache_control": _cache_control(ttl)} if i in marked else {})}]}
            for i, m in enumerate(messages)]


def _classify_anthropic(anthropic, error) -> ModelError:
    if isinstance(error, anthropic.APITimeoutError):
        return ModelError("model_timeout", "The model did not answer in time.", retryable=True)
    if isinstance(error, anthropic.APIConnectionError):
        return ModelError("model_unavailable", "The model service could not be reached.", retryable=True)
    body = getattr(error, "body", None)
    kind = (body.get("error") or {}).get("type") if isinstance(body, dict) else None
    status = getattr(error, "status_code", None)
    message = str(getattr(error, "message", error))
    retry_after = _retry_after(getattr(getattr(error, "response", None), "headers", None))
    if status == 429 or kind == "rate_limit_error":
        return ModelError("rate_limited", "The model's rate limit was reached; try again shortly.", True, retry_after)
    if status == 529 or kind == "overloaded_error":
        return ModelError("overloaded", "The model service is overloaded; try again shortly.", True, retry_after)
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        return ModelError("provider_auth", "The model provider rejected Parley's credentials.")
    if status == 404 or kind == "not_found_error":  # the API answers a retired or unknown model id so
        return ModelError("invalid_request", f"The model is not available: {message}", model_gone=True)
    if "prompt is too long" in message.lower():
        return ModelError("context_too_long", "The conversation is too long for the model; "
                          "lower MAX_CONTEXT_TOKENS or start a new conversation.")
    if (status is not None and status >= 500) or kind == "api_error":
        return ModelError("model_unavailable", f"The model service failed ({status or kind}).", True, retry_after)
    if status is not None and 400 <= status < 500:
        return ModelError("invalid_request", f"The model rejected the request: {message}")
    return ModelError("internal", f"Model call failed: {message}")


class BedrockProvider:
    """Claude on AWS Bedrock through boto3's ConverseStream, with the same streaming,
    usage and error kinds as the Anthropic provider."""

    def __init__(self, region: str, endpoint_url: str | None, timeout: float, cache_ttl: str = "5m"):
        import boto3

        self.cache_ttl = cache_ttl
        from botocore.config import Config

        self.client = boto3.client(
            "bedrock-runtime", region_name=region, endpoint_url=endpoint_url or None,
            config=Config(read_timeout=timeout, connect_timeout=min(timeout, 10),
                          retries={"total_max_attempts": 1, "mode": "standard"}))

    def complete(self, request: ModelRequest) -> ModelReply:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        params = {"modelId": request.model, "messages": _bedrock_messages(request.messages, self.cache_ttl),
                  "inferenceConfig": {"maxTokens": request.max_tokens}}
        if request.system:
            params["system"] = [{"text": request.system}, {"cachePoint": _cache_point(self.cache_ttl)}]
        if request.summary:
            params["system"] = [*params.get("system", []), {"text": summary_block(request.summary)}]
        if request.temperature is not None:
            params["inferenceConfig"]["temperature"] = request.temperature
        cancel = request.cancel or CancelToken()
        parts, usage, stop_reason = [], {}, None
        try:
            stream = self.client.converse_stream(**params)["stream"]
            cancel.on_cancel(stream.close)
            for event in stream:
                if cancel.cancelled:
                    raise Cancelled()
                if "contentBlockDelta" in event:
                    text = event["contentBlockDelta"]["delta"].get("text", "")
                    parts.append(text)
                    if text and request.on_text:
                        request.on_text(text)
                elif "messageStop" in event:
                    stop_reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    usage = event["metadata"].get("usage", {})
        except Cancelled:
            raise
        except (ClientError, BotoCoreError) as error:
            if cancel.cancelled:
                raise Cancelled() from error
            raise _classify_bedrock(error) from error
        except Exception as error:
            if cancel.cancelled:
                raise Cancelled() from error
            if isinstance(error, HTTPError):  # urllib3's, from an event stream cut short
                raise _connection_lost() from error
            raise
        return ModelReply("".join(parts), request.model, usage.get("inputTokens", 0), usage.get("outputTokens", 0),
                          usage.get("cacheWriteInputTokens", 0), usage.get("cacheReadInputTokens", 0), stop_reason)


def _cache_point(ttl: str) -> dict:
    return {"type": "default", **({"ttl": ttl} if ttl != "5m" else {})}


def _bedrock_messages(messages: list[dict], ttl: str = "5m") -> list[dict]:
    marked = _cache_marks(messages)
    return [{"role": m["role"], "content": [{"text": m["content"]}]
             + ([{"cachePoint": _cache_point(ttl)}] if i in marked else [])}
            for i, m in enumerate(messages)]


def _classify_bedrock(error) -> ModelError:
    from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

    if isinstance(error, (ReadTimeoutError, ConnectTimeoutError)):
        return ModelError("model_timeout", "The model did not answer in time.", retryable=True)
    if not isinstance(error, ClientError):
        return ModelError("model_unavailable", "The model service could not be reached.", retryable=True)
    code = error.response.get("Error", {}).get("Code", "").lower().removesuffix("exception")
    message = error.response.get("Error", {}).get("Message", "")
    retry_after = _retry_after(error.response.get("ResponseMetadata", {}).get("HTTPHeaders"))
    if code in ("throttling", "toomanyrequests"):
        return ModelError("rate_limited", "The model's rate limit was reached; try again shortly.", True, retry_after)
    if code in ("serviceunavailable", "modelnotready"):
        return ModelError("overloaded", "The model service is overloaded; try again shortly.", True, retry_after)
    if code in ("accessdenied", "unrecognizedclient", "expiredtoken"):
        return ModelError("provider_auth", "The model provider rejected Parley's credentials.")
    if code == "validation" and "too long" in message.lower():
        return ModelError("context_too_long", "The conversation is too long for the model; "
                          "lower MAX_CONTEXT_TOKENS or start a new conversation.")
    if code in ("internalserver", "modelstreamerror", "modeltimeout", "modelerror"):
        return ModelError("model_unavailable", f"The model service failed ({code}).", True, retry_after)
    if code == "resourcenotfound" or (code == "validation" and "model identifier" in message.lower()):
        return ModelError("invalid_request", f"The model is not available: {message}", model_gone=True)
    if code in ("validation", "resourcenotfound"):
        return ModelError("invalid_request", f"The model rejected the request: {message}")
    return ModelError("internal", f"Model call failed: {code}: {message}")
