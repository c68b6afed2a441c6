"""Claude through the Messages API and the official `anthropic` SDK."""
from __future__ import annotations

from shared.cancel import Cancelled, CancelToken
from shared.model.attachments import FILES_API_BETA, Attachment, AttachmentSource, uses_files_api, with_attachments
from shared.model.blocks import THINKING_TYPES, AnthropicBlocks, text_of_blocks
from shared.model.types import (ModelError, ModelReply, ModelRequest, cache_marks, connection_lost, model_error,
                                retry_after_seconds, summary_block)


class AnthropicProvider:
    """The Messages API through the official SDK, streamed so text arrives as it is made.

    The system prompt and the newest message carry `cache_control` (see `_cache_marks`),
    so the next turn of the conversation reads everything before its new message from
    the prompt cache. `cache_ttl` is PROMPT_CACHE_TTL.
    """

    def __init__(self, api_key: str, base_url: str | None, timeout: float, cache_ttl: str = "5m",
                 attachments: AttachmentSource | None = None, files_api: bool = False, connections: int = 100):
        self.cache_ttl = cache_ttl
        # Where attached files' bytes come from; with files_api, images and PDFs go by Files API id.
        self.attachments, self.files_api = attachments, files_api
        import anthropic
        import httpx2

        self._anthropic = anthropic
        self._transport_errors = httpx2.TransportError
        # Keep a connection for every call in flight (the worker's concurrency): with the
        # SDK's default of 100 kept, each burst of 200 calls opened 100 new connections
        # (TLS handshakes, against the real API) and waited on them.
        limits = httpx2.Limits(max_connections=max(connections, 1000), max_keepalive_connections=connections)
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0,
                                          http_client=anthropic.DefaultHttpxClient(limits=limits, timeout=timeout))

    def complete(self, request: ModelRequest) -> ModelReply:
        messages = with_attachments(request.messages, self.attachments, self._upload if self.files_api else None)
        params = {"model": request.model, "max_tokens": request.max_tokens,
                  "messages": anthropic_messages(messages, self.cache_ttl)}
        if uses_files_api(messages):
            params["extra_headers"] = {"anthropic-beta": FILES_API_BETA}
        if request.system:
            params["system"] = [{"type": "text", "text": request.system,
                                 "cache_control": _cache_control(self.cache_ttl)}]
        if request.summary:
            params["system"] = [*params.get("system", []), {"type": "text", "text": summary_block(request.summary)}]
        params.update(thinking_params(request))
        if request.tools:
            params["tools"] = request.tools
            if request.tool_choice:
                params["tool_choice"] = request.tool_choice
        cancel = request.cancel or CancelToken()
        reply = _StreamedReply(AnthropicBlocks(request.on_text, request.on_thinking, request.on_tool_input))
        try:
            # The raw event stream, not the SDK's `messages.stream` helper: that one rebuilds
            # a snapshot of the whole message on every event, which cost the worker ~3 ms of
            # CPU a reply (measured); only the text and the usage are needed here.
            with self.client.messages.create(**params, stream=True) as stream:
                cancel.on_cancel(stream.close)
                for event in stream:
                    if cancel.cancelled:
                        raise Cancelled()
                    reply.take(event)
        except Cancelled:
            raise
        except Exception as error:
            if cancel.cancelled:  # the stream was closed under the reader
                raise Cancelled() from error
            if isinstance(error, self._anthropic.APIError):
                raise classify_anthropic(self._anthropic, error) from error
            if isinstance(error, self._transport_errors):  # the SDK lets a connection lost mid-stream through
                raise connection_lost() from error
            raise
        return reply.finish(request.model)


    def _upload(self, attachment: Attachment) -> str:
        """Send a file's bytes to the Files API once; its id stands for them from then on."""
        try:
            uploaded = self.client.beta.files.upload(file=(attachment.name, attachment.data, attachment.media_type),
                                                     betas=[FILES_API_BETA])
        except self._anthropic.APIError as error:
            raise classify_anthropic(self._anthropic, error) from error
        return uploaded.id


class _StreamedReply:
    """A Messages API reply read off its stream events."""

    def __init__(self, blocks: AnthropicBlocks) -> None:
        self.blocks = blocks  # the content, passed to on_text / on_thinking as it streams
        self.model: str | None = None
        self.usage: dict[str, int] = {}
        self.stop_reason: str | None = None
        self.stop_details: dict | None = None
        self.server_tool_use: dict = {}
        self.complete = False

    def take(self, event) -> None:
        """Fold one event in."""
        if self.blocks.take(event):
            return
        if event.type == "message_start":
            self.model = event.message.model
            self._count(event.message.usage)
        elif event.type == "message_delta":  # usage here is cumulative: it replaces message_start's
            self.stop_reason = event.delta.stop_reason
            if details := getattr(event.delta, "stop_details", None):
                self.stop_details = details.model_dump() if hasattr(details, "model_dump") else dict(details)
            self._count(event.usage)
        elif event.type == "message_stop":
            self.complete = True

    def _count(self, usage) -> None:
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = getattr(usage, name, None)
            if value is not None:
                self.usage[name] = value
        if server := getattr(usage, "server_tool_use", None):  # cumulative, as the token counts
            self.server_tool_use = {k: v for k, v in server.model_dump().items() if v}
        if details := getattr(usage, "output_tokens_details", None):
            self.usage["thinking_tokens"] = details.thinking_tokens

    def finish(self, model: str) -> ModelReply:
        if not self.complete:  # the stream ended without message_stop: the connection was cut
            raise connection_lost()
        usage, blocks = self.usage, self.blocks.finish()
        return ModelReply(text_of_blocks(blocks), self.model or model, usage.get("input_tokens", 0),
                          usage.get("output_tokens", 0), usage.get("cache_creation_input_tokens", 0),
                          usage.get("cache_read_input_tokens", 0), self.stop_reason, self.stop_details,
                          blocks, usage.get("thinking_tokens", 0), self.server_tool_use)


def _cache_control(ttl: str) -> dict:
    return {"type": "ephemeral", **({"ttl": ttl} if ttl != "5m" else {})}  # 5m is the API's default


def anthropic_messages(messages: list[dict], ttl: str = "5m") -> list[dict]:
    marked = cache_marks(messages)
    return [{"role": m["role"], "content": _content_blocks(m["content"], ttl if i in marked else None)}
            for i, m in enumerate(messages)]


def _content_blocks(content: str | list[dict], ttl: str | None) -> str | list[dict]:
    """A message's content, each block as it was (a thinking block must return unchanged);
    with `ttl`, as blocks with the cache breakpoint on the last block that may carry one.

    Without one, a lone text block goes as its string: the API reads a string as
    "shorthand for an array of one content block of type text", so the prompt (and its
    cache entries) is the same, and a long window is a third of the objects for the SDK
    to copy and encode on every turn."""
    if ttl is None:
        if isinstance(content, list) and len(content) == 1 and content[0].keys() == _TEXT_KEYS \
                and content[0]["type"] == "text":
            return content[0]["text"]
        return content
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else [dict(b) for b in content]
    marked = next((i for i in range(len(blocks) - 1, -1, -1) if blocks[i].get("type") not in THINKING_TYPES), None)
    if marked is not None:
        blocks[marked]["cache_control"] = _cache_control(ttl)
    return blocks


_TEXT_KEYS = {"type", "text"}


def thinking_params(request: ModelRequest) -> dict:
    """The request's `thinking` and `output_config.effort`, as the Messages API takes them."""
    return {**({"thinking": request.thinking} if request.thinking else {}),
            **({"output_config": {"effort": request.effort}} if request.effort else {})}


def classify_anthropic(anthropic, error) -> ModelError:
    if isinstance(error, anthropic.APITimeoutError):
        return model_error("model_timeout")
    if isinstance(error, anthropic.APIConnectionError):
        return model_error("model_unavailable")
    body = getattr(error, "body", None)
    kind = (body.get("error") or {}).get("type") if isinstance(body, dict) else None
    status = getattr(error, "status_code", None)
    message = str(getattr(error, "message", error))
    retry_after = retry_after_seconds(getattr(getattr(error, "response", None), "headers", None))
    if status == 429 or kind == "rate_limit_error":
        return model_error("rate_limited", retry_after=retry_after)
    if status == 529 or kind == "overloaded_error":
        return model_error("overloaded", retry_after=retry_after)
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        return model_error("provider_auth")
    if status == 404 or kind == "not_found_error":  # the API answers a retired or unknown model id so
        return model_error("invalid_request", f"The model is not available: {message}", model_gone=True)
    if "prompt is too long" in message.lower():
        return model_error("context_too_long")
    if (status is not None and status >= 500) or kind == "api_error":
        return model_error("model_unavailable", f"The model service failed ({status or kind}).", retry_after)
    if status is not None and 400 <= status < 500:
        return ModelError("invalid_request", f"The model rejected the request: {message}")
    return ModelError("internal", f"Model call failed: {message}")
