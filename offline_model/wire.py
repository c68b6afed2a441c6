"""What the offline model says, apart from HTTP: replies, usage with a simulated
prompt cache, scripted faults, and AWS event-stream framing for Bedrock."""
from __future__ import annotations

import binascii
import hashlib
import json
import struct
from dataclasses import dataclass

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


# The docs' published test string: the API answers it with stop_reason "refusal". Like the
# real model, the offline one refuses again while the string stays anywhere in the context.
REFUSAL_TRIGGER = "ANTHROPIC_MAGIC_STRING_TRIGGER_REFUSAL_1FAEFB6177B4672DEE07F9D3AFC62588CCD2631EDCF22E8CCC1FB35B501C9C86"
REFUSAL_DETAILS = {"type": "refusal", "category": "cyber",
                   "explanation": "This request was declined because it could enable cyber harm."}
# The offline model's own triggers, in the newest user message, for the other documented answers.
EMPTY_TRIGGER = "OFFLINE_MODEL_EMPTY_REPLY"  # end_turn with no content (2-3 output tokens)
WINDOW_TRIGGER = "OFFLINE_MODEL_CONTEXT_WINDOW_EXCEEDED"  # model_context_window_exceeded, half a reply
STOP_REASON_TRIGGER = "OFFLINE_MODEL_STOP_REASON="  # followed by any stop reason, sent as it is


def scripted_answer(messages: list[dict], text_of) -> tuple[str, str, dict | None] | None:
    """(text, stop_reason, stop_details) for a request that asks for a special answer, else None."""
    if any(m["role"] == "user" and REFUSAL_TRIGGER in text_of(m["content"]) for m in messages):
        return "Hello..", "refusal", REFUSAL_DETAILS
    last = text_of(messages[-1]["content"])
    if EMPTY_TRIGGER in last:
        return "", "end_turn", None
    if WINDOW_TRIGGER in last:
        return f"offline model: the context window filled up while answering {len(messages)} mess", \
            "model_context_window_exceeded", None
    if STOP_REASON_TRIGGER in last:
        reason = last.split(STOP_REASON_TRIGGER, 1)[1].split()[0] if last.split(STOP_REASON_TRIGGER, 1)[1] else ""
        return f"offline model: stopping with {reason or 'no reason'}", reason or None, None
    return None


def request_problem(messages: list[dict], system) -> str | None:
    """The first of the Messages API's rules on content this request breaks, in the API's words."""
    def texts(content):
        if isinstance(content, str):
            return [content]
        return [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]

    for i, message in enumerate(messages):
        for text in texts(message["content"]):
            if not isinstance(text, str) or text == "":
                return f"messages.{i}: text content blocks must be non-empty"
            if not text.strip():
                return f"messages.{i}: text content blocks must contain non-whitespace text"
        if isinstance(message["content"], list) and not message["content"]:
            return (f"messages.{i}: all messages must have non-empty content except for the optional final "
                    "assistant message")
    for text in texts(system) if isinstance(system, (str, list)) else []:
        if not isinstance(text, str) or not text.strip():
            return "system: text content blocks must contain non-whitespace text"
    last = messages[-1]
    if last["role"] == "assistant" and any(t != t.rstrip() for t in texts(last["content"])):
        return "final assistant content cannot end with trailing whitespace"
    return _tool_pairing_problem(messages)


def _blocks(message: dict, kind: str) -> list[dict]:
    content = message["content"]
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind] if isinstance(content, list) else []


def _tool_pairing_problem(messages: list[dict]) -> str | None:
    """A tool_use must be answered by a tool_result in the very next message, and a
    tool_result must answer a tool_use of the message before it."""
    for i, message in enumerate(messages):
        asked = [b.get("id") for b in _blocks(message, "tool_use")]
        following = _blocks(messages[i + 1], "tool_result") if i + 1 < len(messages) else []
        answered = [b.get("tool_use_id") for b in following]
        if missing := [tool_id for tool_id in asked if tool_id not in answered]:
            return (f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                    f"{', '.join(map(str, missing))}. Each `tool_use` block must have a corresponding `tool_result` "
                    "block in the next message.")
        previous = [b.get("id") for b in _blocks(messages[i - 1], "tool_use")] if i else []
        for j, block in enumerate(_blocks(message, "tool_result")):
            if block.get("tool_use_id") not in previous:
                return (f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.")
    return None


def reply_text(messages: list[dict], text_of, max_tokens: int | None = None) -> tuple[str, str]:
    """The canned reply and its stop reason; cut at `max_tokens`, as a model's would be."""
    text = f'offline model: received {len(messages)} messages; last: "{text_of(messages[-1]["content"])}"'
    if isinstance(max_tokens, int) and max_tokens > 0 and estimate_tokens(text) > max_tokens:
        return text[: max_tokens * 4], "max_tokens"
    return text, "end_turn"


# Anthropic's prompt-cache rules. The minimum cacheable prefix per model (tokens), from
# the prompt-caching guide; a prefix shorter than its model's minimum is neither written nor
# read. Models newer than the guide's table take their generation's figure.
MIN_CACHEABLE_TOKENS = {
    "claude-fable-5-2": 512, "claude-mythos-5-2": 512, "claude-fable-5-1": 512, "claude-mythos-5-1": 512,
    "claude-fable-5": 512, "claude-mythos-5": 512, "claude-mythos-preview": 512, "claude-opus-5-5": 512,
    "claude-opus-5": 512, "claude-sonnet-5-5": 1024, "claude-sonnet-5": 1024, "claude-haiku-5-5": 2048,
    "claude-opus-4-8": 1024, "claude-opus-4-7": 2048, "claude-opus-4-6": 4096, "claude-opus-4-5": 4096,
    "claude-haiku-4-5": 4096, "claude-sonnet-4-6": 1024, "claude-sonnet-4-5": 1024, "claude-opus-4-1": 1024,
}
DEFAULT_MIN_CACHEABLE_TOKENS = 1024
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20  # how far before a breakpoint the API looks for an entry to read
TTL_SECONDS = {"5m": 300, "1h": 3600}
FRAMING_TOKENS = 4  # what a message adds beyond its text (see messages.prompt_tokens)


def min_cacheable_tokens(model: str) -> int:
    """By model id, a dated id or a Bedrock id/profile (`global.anthropic.claude-sonnet-5-5`)."""
    found = [known for known in MIN_CACHEABLE_TOKENS if known in str(model)]
    return MIN_CACHEABLE_TOKENS[max(found, key=len)] if found else DEFAULT_MIN_CACHEABLE_TOKENS


@dataclass(frozen=True)
class Block:
    """One content block of a prompt, in order (system first): its text, its tokens, and
    the TTL of its cache breakpoint (None when it has none)."""
    text: str
    tokens: int
    ttl: str | None = None


class TooManyBreakpoints(ValueError):
    pass


class PromptCache:
    """Anthropic's prompt cache, simulated: an entry is the prompt's prefix up to a cache
    breakpoint, written the first time it is sent (if it is at least the model's minimum
    long) and read by a later request whose breakpoint is at that block or up to 20 blocks
    after it. An entry lives for its TTL (5m or 1h) from its last write or read. Times are
    seconds on the caller's clock (the server's, which tests can move forward)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, int]] = {}  # prefix digest -> (expires at, TTL seconds)

    def usage(self, model: str, blocks: list[Block], total_tokens: int, now: float) -> dict:
        marks = [i for i, block in enumerate(blocks) if block.ttl]
        if len(marks) > MAX_BREAKPOINTS:
            raise TooManyBreakpoints(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
                                     f"Found {len(marks)}.")
        digest, keys, sizes, tokens = hashlib.sha256(str(model).encode() + b"\x00"), [], [], 0
        for block in blocks:
            digest.update(block.text.encode() + b"\x00")
            keys.append(digest.hexdigest())
            tokens += block.tokens
            sizes.append(min(tokens, total_tokens))
        minimum = min_cacheable_tokens(model)

        def live(i: int) -> bool:
            entry = self.entries.get(keys[i])
            return entry is not None and entry[0] > now and sizes[i] >= minimum

        read_at = -1
        for mark in marks:
            hit = next((i for i in range(mark, max(-1, mark - LOOKBACK_BLOCKS - 1), -1) if live(i)), -1)
            read_at = max(read_at, hit)
        for i in {read_at, *(mark for mark in marks if mark <= read_at)}:  # a use refreshes an entry's life
            if i >= 0 and live(i):
                seconds = self.entries[keys[i]][1]
                self.entries[keys[i]] = (now + seconds, seconds)
        written_to = -1
        for mark in marks:
            if mark > read_at and sizes[mark] >= minimum:
                seconds = TTL_SECONDS.get(blocks[mark].ttl, TTL_SECONDS["5m"])
                self.entries[keys[mark]] = (now + seconds, seconds)
                written_to = mark
        read = sizes[read_at] if read_at >= 0 else 0
        written = sizes[written_to] - read if written_to > read_at else 0
        if len(self.entries) > 50_000:
            self.entries = {key: entry for key, entry in self.entries.items() if entry[0] > now}
        return {"input_tokens": total_tokens - read - written, "cache_read_input_tokens": read,
                "cache_creation_input_tokens": written}


def _ttl(marker: object) -> str | None:
    """The TTL a `cache_control` / `cachePoint` asks for; None when there is no marker."""
    return (marker.get("ttl") or "5m") if isinstance(marker, dict) else None


def anthropic_blocks(body: dict, text_of, media=None) -> list[Block]:
    """The prompt's blocks; `media` (offline_model/media.py media_key) gives an image or
    document block's identity and tokens."""
    blocks = []
    system = body.get("system")
    if isinstance(system, str):
        blocks.append(Block(system, estimate_tokens(system)))
    elif isinstance(system, list):
        blocks += [Block(b.get("text", ""), estimate_tokens(b.get("text", "")), _ttl(b.get("cache_control")))
                   for b in system if isinstance(b, dict)]
    for message in body["messages"]:
        content = message["content"]
        items = [{"text": content}] if isinstance(content, str) else [b for b in content if isinstance(b, dict)]
        for i, item in enumerate(items):
            text, tokens = message["role"] + ":" + item.get("text", ""), estimate_tokens(item.get("text", ""))
            if media is not None and (found := media(item)):
                text, tokens = message["role"] + ":" + found[0], found[1]
            framing = FRAMING_TOKENS if i == 0 else 0
            blocks.append(Block(text, tokens + framing, _ttl(item.get("cache_control"))))
    if isinstance(body.get("cache_control"), dict) and blocks:  # automatic caching: the last block
        blocks[-1] = Block(blocks[-1].text, blocks[-1].tokens, _ttl(body["cache_control"]))
    return blocks


def bedrock_blocks(body: dict, media=None) -> list[Block]:
    """Bedrock marks a breakpoint with a `cachePoint` block after the blocks it covers."""
    blocks: list[Block] = []

    def add(items: list[dict], prefix: str) -> None:
        first = True
        for item in items:
            if "cachePoint" in item and blocks:
                blocks[-1] = Block(blocks[-1].text, blocks[-1].tokens, _ttl(item["cachePoint"]))
            elif "text" in item:
                framing = FRAMING_TOKENS if prefix and first else 0
                blocks.append(Block(prefix + item["text"], estimate_tokens(item["text"]) + framing))
                first = False
            elif media is not None and (found := media(item)):
                blocks.append(Block(prefix + found[0], found[1] + (FRAMING_TOKENS if prefix and first else 0)))
                first = False

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
