"""What the offline model reads from a request: its messages validated by the API's
rules, their text, their token count, and how a reply is paced when streamed."""
from __future__ import annotations

from typing import Any

from offline_model.wire import estimate_tokens, request_problem


class BadRequest(Exception):
    """Raised for a request the real API would reject with invalid_request_error."""


def prompt_tokens(messages: list[dict], system_text: str) -> int:
    """What the model would count as input: each message plus a little framing, and the system."""
    tokens = sum(estimate_tokens(text_of(m["content"])) + 4 for m in messages)
    return tokens + (estimate_tokens(system_text) if system_text else 0)


def paced(reply: str, settings: dict) -> tuple[list[str], float]:
    """The reply in `chunk_chars` pieces and the pause between them: stream_delay_ms is
    the total time, spread evenly over the gaps between deltas."""
    size = settings["chunk_chars"]
    chunks = [reply[i : i + size] for i in range(0, len(reply), size)]
    return chunks, settings["stream_delay_ms"] / 1000 / max(1, len(chunks) - 1)


def text_of(content: Any) -> str:
    """Text of a message's content or a system prompt: a string or a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def validate_messages(body: Any) -> list[dict]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), (str, list)):
            raise BadRequest(f"messages.{i}: must be an object with string or list content")
        expected = "user" if i % 2 == 0 else "assistant"
        if msg.get("role") != expected:
            if i == 0:
                raise BadRequest("messages: first message must use the \"user\" role")
            raise BadRequest("messages: roles must alternate between \"user\" and \"assistant\"")
    if messages[-1]["role"] != "user":
        raise BadRequest("messages: final message must use the \"user\" role")
    if problem := request_problem(messages, body.get("system")):
        raise BadRequest(problem)
    return messages
