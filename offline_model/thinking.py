"""Thinking, as the offline model does it: the request's `thinking` checked against the
model's capabilities and the API's rules, a deterministic thinking block signed with an
HMAC of its text, and a later request refused when a thinking block it sends back is not
exactly the one the model wrote (like the real API, which checks signatures)."""
from __future__ import annotations

import base64
import hashlib
import hmac

from offline_model import catalog

_KEY = b"offline-model-thinking-signatures"
# The docs' published test string: the API answers it with a redacted_thinking block.
REDACTED_TRIGGER = ("ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_"
                    "46C9A13E193C177646C7398A98432ECCCE4C1253D5E2D82641AC0E52CC2876CB")
MIN_BUDGET = 1024
EFFORTS = ("low", "medium", "high", "xhigh", "max")


def sign(text: str) -> str:
    return base64.b64encode(hmac.new(_KEY, b"thinking\x00" + text.encode(), hashlib.sha256).digest()).decode()


def redacted_data(text: str) -> str:
    """Opaque to the caller: the signed thought, as the real API's encrypted data is."""
    return base64.b64encode(b"redacted\x00" + text.encode() + b"\x00" + sign(text).encode()).decode()


def _redacted_ok(data) -> bool:
    try:
        kind, text, signature = base64.b64decode(str(data), validate=True).split(b"\x00", 2)
    except ValueError:
        return False
    return kind == b"redacted" and hmac.compare_digest(sign(text.decode(errors="replace")).encode(), signature)


def thinking_problem(model: str, thinking, max_tokens, effort) -> str | None:
    """Why the API would refuse this request's `thinking` / `output_config.effort`, in its words."""
    caps = catalog.capabilities(catalog.anthropic_id(str(model)) or str(model))
    if effort is not None:
        if effort not in EFFORTS:
            return f"output_config.effort: Input should be {', '.join(repr(e) for e in EFFORTS)}"
        if not caps["effort"]["supported"] or not caps["effort"].get(effort, {}).get("supported"):
            return f"output_config.effort: effort {effort!r} is not supported by this model"
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive", "disabled", "between_tools"):
        return "thinking.type: Input should be 'enabled', 'adaptive', 'disabled' or 'between_tools'"
    if not caps["thinking"]["types"][kind]["supported"]:
        return f'"thinking.type.{kind}" is not supported for this model'
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < MIN_BUDGET:
            return f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET}"
        if isinstance(max_tokens, int) and budget >= max_tokens:
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
    return None


def thinks(thinking) -> bool:
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def thought_blocks(messages: list[dict], text_of) -> list[dict]:
    """The thinking this request gets: deterministic, so a test can predict it."""
    last = text_of(messages[-1]["content"])
    text = f"The user's message {len(messages) // 2 + 1} says {last[:60]!r}; I will echo it back."
    if REDACTED_TRIGGER in last:
        return [{"type": "redacted_thinking", "data": redacted_data(text)}]
    return [{"type": "thinking", "thinking": text, "signature": sign(text)}]


def signature_problem(messages: list[dict]) -> str | None:
    """The first thinking block sent back that the model did not write as it is."""
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or not isinstance(message["content"], list):
            continue
        for j, block in enumerate(message["content"]):
            if not isinstance(block, dict):
                continue
            if block.get("type") in ("thinking", "redacted_thinking") and "cache_control" in block:
                return f"messages.{i}.content.{j}.{block['type']}.cache_control: Extra inputs are not permitted"
            if block.get("type") == "thinking" and not hmac.compare_digest(
                    sign(str(block.get("thinking", ""))), str(block.get("signature", ""))):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            if block.get("type") == "redacted_thinking" and not _redacted_ok(block.get("data")):
                return f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
    return None


def thinking_tokens(blocks: list[dict]) -> int:
    from offline_model.wire import estimate_tokens

    return sum(estimate_tokens(b.get("thinking") or b.get("data", "")) for b in blocks)


def block_events(index: int, block: dict, chunk_chars: int) -> list[dict]:
    """A thinking block as the API streams it: start empty, thinking deltas, the signature."""
    if block["type"] == "redacted_thinking":  # arrives whole, in its start event
        return [{"type": "content_block_start", "index": index, "content_block": block},
                {"type": "content_block_stop", "index": index}]
    text = block["thinking"]
    events = [{"type": "content_block_start", "index": index,
               "content_block": {"type": "thinking", "thinking": "", "signature": ""}}]
    events += [{"type": "content_block_delta", "index": index,
                "delta": {"type": "thinking_delta", "thinking": text[i:i + chunk_chars]}}
               for i in range(0, len(text), chunk_chars)]
    return events + [{"type": "content_block_delta", "index": index,
                      "delta": {"type": "signature_delta", "signature": block["signature"]}},
                     {"type": "content_block_stop", "index": index}]


def converse_frames(index: int, block: dict, chunk_chars: int) -> list[tuple[str, dict]]:
    """The same block as ConverseStream sends reasoning: text deltas, then the signature."""
    if block["type"] == "redacted_thinking":
        return [("contentBlockDelta", {"delta": {"reasoningContent": {"redactedContent": block["data"]}},
                                       "contentBlockIndex": index}),
                ("contentBlockStop", {"contentBlockIndex": index})]
    text = block["thinking"]
    frames = [("contentBlockDelta", {"delta": {"reasoningContent": {"text": text[i:i + chunk_chars]}},
                                     "contentBlockIndex": index}) for i in range(0, len(text), chunk_chars)]
    return frames + [("contentBlockDelta", {"delta": {"reasoningContent": {"signature": block["signature"]}},
                                            "contentBlockIndex": index}),
                     ("contentBlockStop", {"contentBlockIndex": index})]


def from_converse(block: dict) -> dict:
    """A Converse request's content block in the Messages API's shape (what the checks read)."""
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, dict) and "redactedContent" in reasoning:
        return {"type": "redacted_thinking", "data": reasoning["redactedContent"]}
    if isinstance(reasoning, dict):
        text = reasoning.get("reasoningText") or {}
        return {"type": "thinking", "thinking": text.get("text", ""), "signature": text.get("signature", "")}
    return {"type": "text", "text": block.get("text", "")}
