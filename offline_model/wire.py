"""What the offline model says, apart from HTTP: replies, usage with a simulated
prompt cache, scripted faults, and AWS event-stream framing for Bedrock."""
from __future__ import annotations

import binascii
import hashlib
import json
import struct

# Faults a test can queue through /_control {"faults": [...]}; each request takes the next.
FAULTS = ("rate_limited", "overloaded", "server_error", "overloaded_midstream", "cut_midstream",
          "context_too_long", "invalid_request", "auth", "hang", "disconnect")

# (HTTP status, Anthropic error type, message) for faults answered before any output.
ANTHROPIC_ERRORS = {
    "rate_limited": (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "server_error": (500, "api_error", "Internal server error"),
    "context_too_long": (400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
    "invalid_request": (400, "invalid_request_error", "messages.0.content: unexpected value"),
    "auth": (401, "authentication_error", "invalid x-api-key"),
}

# (HTTP status, Bedrock exception name, message) for the same faults on Bedrock.
BEDROCK_ERRORS = {
    "rate_limited": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "overloaded": (503, "ServiceUnavailableException", "Model is overloaded."),
    "server_error": (500, "InternalServerException", "Internal server error"),
    "context_too_long": (400, "ValidationException", "Input is too long for requested model."),
    "invalid_request": (400, "ValidationException", "Malformed input request."),
    "auth": (403, "AccessDeniedException", "You don't have access to the model."),
}


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def reply_text(messages: list[dict], text_of, max_tokens: int | None = None) -> tuple[str, str]:
    """The canned reply and its stop reason; cut at `max_tokens`, as a model's would be."""
    text = f'offline model: received {len(messages)} messages; last: "{text_of(messages[-1]["content"])}"'
    if isinstance(max_tokens, int) and max_tokens > 0 and estimate_tokens(text) > max_tokens:
        return text[: max_tokens * 4], "max_tokens"
    return text, "end_turn"


class PromptCache:
    """Anthropic-style prompt caching, simulated: a prefix up to a cache breakpoint is
    written on first sight and read afterwards. `blocks` are (text, is_breakpoint)
    in prompt order (system first)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def usage(self, blocks: list[tuple[str, bool]], total_tokens: int) -> dict:
        digest, tokens, breakpoints = hashlib.sha256(), 0, []
        for text, is_breakpoint in blocks:
            digest.update(text.encode() + b"\x00")
            tokens += estimate_tokens(text)
            if is_breakpoint:
                breakpoints.append((digest.copy().hexdigest(), min(tokens, total_tokens)))
        read = max((size for key, size in breakpoints if key in self.seen), default=0)
        written = max(0, breakpoints[-1][1] - read) if breakpoints and breakpoints[-1][0] not in self.seen else 0
        self.seen.update(key for key, _ in breakpoints)
        return {"input_tokens": total_tokens - read - written, "cache_read_input_tokens": read,
                "cache_creation_input_tokens": written}


def anthropic_blocks(body: dict, text_of) -> list[tuple[str, bool]]:
    blocks = []
    system = body.get("system")
    if isinstance(system, str):
        blocks.append((system, False))
    elif isinstance(system, list):
        blocks += [(b.get("text", ""), "cache_control" in b) for b in system if isinstance(b, dict)]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            blocks.append((message["role"] + ":" + content, False))
        else:
            blocks += [(message["role"] + ":" + b.get("text", ""), "cache_control" in b)
                       for b in content if isinstance(b, dict)]
    return blocks


def bedrock_blocks(body: dict) -> list[tuple[str, bool]]:
    """Bedrock marks a breakpoint with a `cachePoint` block after the blocks it covers."""
    blocks: list[tuple[str, bool]] = []

    def add(items: list[dict], prefix: str) -> None:
        for item in items:
            if "cachePoint" in item and blocks:
                blocks[-1] = (blocks[-1][0], True)
            elif "text" in item:
                blocks.append((prefix + item["text"], False))

    add(body.get("system") or [], "")
    for message in body["messages"]:
        add(message["content"], message["role"] + ":")
    return blocks


def event_stream_message(event_type: str, payload: dict, message_type: str = "event") -> bytes:
    """One message of the AWS event-stream encoding (what ConverseStream returns)."""
    kind_header = ":exception-type" if message_type == "exception" else ":event-type"
    headers = b"".join(
        struct.pack("B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        for name, value in ((kind_header, event_type), (":content-type", "application/json"),
                            (":message-type", message_type)))
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(body) + 4, len(headers))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + headers + body
    return message + struct.pack(">I", binascii.crc32(message))
