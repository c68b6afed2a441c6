"""Claude on AWS Bedrock through boto3's ConverseStream, with the same streaming, usage
and error kinds as the Messages API provider."""
from __future__ import annotations

from shared.cancel import Cancelled, CancelToken
from shared.model.attachments import AttachmentSource, converse_media, with_attachments
from shared.model.blocks import ConverseBlocks, converse_block, text_of_blocks
from shared.model.types import (ModelError, ModelReply, ModelRequest, cache_marks, connection_lost, model_error,
                                retry_after_seconds, summary_block)


class BedrockProvider:
    """Claude on AWS Bedrock through boto3's ConverseStream, with the same streaming,
    usage and error kinds as the Anthropic provider."""

    def __init__(self, region: str, endpoint_url: str | None, timeout: float, cache_ttl: str = "5m",
                 attachments: AttachmentSource | None = None, connections: int = 10):
        import boto3

        self.cache_ttl, self.attachments = cache_ttl, attachments  # where attached files' bytes come from
        from botocore.config import Config

        self.client = boto3.client(
            "bedrock-runtime", region_name=region, endpoint_url=endpoint_url or None,
            # A pooled connection for every call in flight (the worker's concurrency); botocore
            # keeps 10 by default, and drops (and later reopens) every connection beyond that.
            config=Config(read_timeout=timeout, connect_timeout=min(timeout, 10), max_pool_connections=connections,
                          retries={"total_max_attempts": 1, "mode": "standard"}))

    def complete(self, request: ModelRequest) -> ModelReply:
        from botocore.exceptions import BotoCoreError, ClientError
        from urllib3.exceptions import HTTPError

        messages = with_attachments(request.messages, self.attachments)
        params = {"modelId": request.model, "messages": bedrock_messages(messages, self.cache_ttl),
                  "inferenceConfig": {"maxTokens": request.max_tokens}}
        if request.system:
            params["system"] = [{"text": request.system}, {"cachePoint": _cache_point(self.cache_ttl)}]
        if request.summary:
            params["system"] = [*params.get("system", []), {"text": summary_block(request.summary)}]
        if request.temperature is not None and not request.thinking:  # Claude refuses a temperature with thinking
            params["inferenceConfig"]["temperature"] = request.temperature
        if fields := thinking_fields(request):
            params["additionalModelRequestFields"] = fields
        if request.tools:
            params["toolConfig"] = tool_config(request.tools, request.tool_choice)
        cancel = request.cancel or CancelToken()
        blocks, usage, stop_reason = ConverseBlocks(request.on_text, request.on_thinking, request.on_tool_input), {}, None
        try:
            stream = self.client.converse_stream(**params)["stream"]
            cancel.on_cancel(stream.close)
            for event in stream:
                if cancel.cancelled:
                    raise Cancelled()
                if blocks.take(event):
                    continue
                if "messageStop" in event:
                    stop_reason = event["messageStop"].get("stopReason")
                elif "metadata" in event:
                    usage = event["metadata"].get("usage", {})
        except Cancelled:
            raise
        except (ClientError, BotoCoreError) as error:
            if cancel.cancelled:
                raise Cancelled() from error
            raise classify_bedrock(error) from error
        except Exception as error:
            if cancel.cancelled:
                raise Cancelled() from error
            if isinstance(error, HTTPError):  # urllib3's, from an event stream cut short
                raise connection_lost() from error
            raise
        content = blocks.finish()
        return ModelReply(text_of_blocks(content), request.model, usage.get("inputTokens", 0),
                          usage.get("outputTokens", 0), usage.get("cacheWriteInputTokens", 0),
                          usage.get("cacheReadInputTokens", 0), stop_reason, blocks=content)


def _cache_point(ttl: str) -> dict:
    return {"type": "default", **({"ttl": ttl} if ttl != "5m" else {})}


def bedrock_messages(messages: list[dict], ttl: str = "5m") -> list[dict]:
    marked = cache_marks(messages)
    return [{"role": m["role"], "content": _converse_content(m["content"])
             + ([{"cachePoint": _cache_point(ttl)}] if i in marked else [])}
            for i, m in enumerate(messages)]


def _converse_content(content: str | list[dict]) -> list[dict]:
    if isinstance(content, str):
        return [{"text": content}]
    return [converted for block in content
            if (converted := converse_block(block) or converse_media(block)) is not None]


def tool_config(tools: list[dict], choice: dict | None) -> dict:
    """Converse's toolConfig. It has no `none` choice: the tools go without one (auto)."""
    config = {"tools": [{"toolSpec": {"name": t["name"], "inputSchema": {"json": t["input_schema"]},
                                      **({"description": t["description"]} if t.get("description") else {})}}
                        for t in tools]}
    kind = (choice or {}).get("type")
    if kind in ("auto", "any"):
        config["toolChoice"] = {kind: {}}
    elif kind == "tool":
        config["toolChoice"] = {"tool": {"name": choice["name"]}}
    return config


def thinking_fields(request: ModelRequest) -> dict:
    """Thinking and effort go to Claude as the Messages API's own fields, through
    additionalModelRequestFields (Converse has no parameter of its own for them)."""
    return {**({"thinking": request.thinking} if request.thinking else {}),
            **({"output_config": {"effort": request.effort}} if request.effort else {})}


def classify_bedrock(error) -> ModelError:
    from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

    if isinstance(error, (ReadTimeoutError, ConnectTimeoutError)):
        return model_error("model_timeout")
    if not isinstance(error, ClientError):
        return model_error("model_unavailable")
    code = error.response.get("Error", {}).get("Code", "").lower().removesuffix("exception")
    message = error.response.get("Error", {}).get("Message", "")
    retry_after = retry_after_seconds(error.response.get("ResponseMetadata", {}).get("HTTPHeaders"))
    if code in ("throttling", "toomanyrequests"):
        return model_error("rate_limited", retry_after=retry_after)
    if code in ("serviceunavailable", "modelnotready"):
        return model_error("overloaded", retry_after=retry_after)
    if code in ("accessdenied", "unrecognizedclient", "expiredtoken"):
        return model_error("provider_auth")
    if code == "validation" and "too long" in message.lower():
        return model_error("context_too_long")
    if code in ("internalserver", "modelstreamerror", "modeltimeout", "modelerror"):
        return model_error("model_unavailable", f"The model service failed ({code}).", retry_after)
    if code == "resourcenotfound" or (code == "validation" and "model identifier" in message.lower()):
        return model_error("invalid_request", f"The model is not available: {message}", model_gone=True)
    if code in ("validation", "resourcenotfound"):
        return ModelError("invalid_request", f"The model rejected the request: {message}")
    return ModelError("internal", f"Model call failed: {code}: {message}")
