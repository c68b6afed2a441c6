"""A reply's content blocks, assembled from a provider's stream events into the Messages
API's own shape (text, thinking, redacted_thinking, tool_use, server_tool_use ...), and
the same blocks written back in each provider's request format.

The blocks are what a later turn sends back: a thinking block must return exactly as it
came, signature included, so nothing here rewrites one.
"""
from __future__ import annotations

import base64
import json
from typing import Callable

THINKING_TYPES = ("thinking", "redacted_thinking")
_TOOL_TYPES = ("tool_use", "server_tool_use")


def _parsed_input(partial_json: str) -> dict:
    """A tool call's input from its streamed pieces; a call with no arguments streams none."""
    return json.loads(partial_json) if partial_json.strip() else {}


def _finished(blocks: dict[int, dict]) -> tuple[dict, ...]:
    """In stream order; an empty text block is dropped (the API refuses one sent back)."""
    return tuple(block for _, block in sorted(blocks.items())
                 if not (block.get("type") == "text" and not block.get("text")))


class AnthropicBlocks:
    """Folds the Messages API's raw stream events (content_block_start / _delta / _stop)
    into blocks, calling `on_text` / `on_thinking` / `on_tool_input` with each piece as it arrives."""

    def __init__(self, on_text: Callable[[str], None] | None = None,
                 on_thinking: Callable[[str], None] | None = None,
                 on_tool_input: Callable[[dict], None] | None = None):
        self.on_text, self.on_thinking, self.on_tool_input = on_text, on_thinking, on_tool_input
        self.blocks: dict[int, dict] = {}
        self._json: dict[int, str] = {}  # a tool call's input, as streamed so far

    def take(self, event) -> bool:
        """Fold one event in; False if it is not a content block event."""
        if event.type == "content_block_start":
            block = event.content_block.to_dict()
            if block.get("type") in _TOOL_TYPES:
                self._json[event.index] = ""
            self.blocks[event.index] = block
        elif event.type == "content_block_delta":
            self._delta(self.blocks.setdefault(event.index, {"type": "text", "text": ""}), event.index, event.delta)
        elif event.type == "content_block_stop":
            if event.index in self._json:
                self.blocks[event.index]["input"] = _parsed_input(self._json.pop(event.index))
        else:
            return False
        return True

    def _delta(self, block: dict, index: int, delta) -> None:
        if delta.type == "text_delta":
            block["text"] = block.get("text", "") + delta.text
            if self.on_text and delta.text:
                self.on_text(delta.text)
        elif delta.type == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.thinking
            if self.on_thinking and delta.thinking:
                self.on_thinking(delta.thinking)
        elif delta.type == "signature_delta":
            block["signature"] = block.get("signature", "") + delta.signature
        elif delta.type == "input_json_delta":
            self._json[index] = self._json.get(index, "") + delta.partial_json
            _tool_input(self.on_tool_input, block, delta.partial_json)
        elif delta.type == "citations_delta":
            block.setdefault("citations", []).append(delta.citation.to_dict())

    def finish(self) -> tuple[dict, ...]:
        return _finished(self.blocks)


class ConverseBlocks:
    """Folds Bedrock ConverseStream events (contentBlockStart / Delta / Stop) into blocks of
    the Messages API's shape, as AnthropicBlocks does."""

    def __init__(self, on_text: Callable[[str], None] | None = None,
                 on_thinking: Callable[[str], None] | None = None,
                 on_tool_input: Callable[[dict], None] | None = None):
        self.on_text, self.on_thinking, self.on_tool_input = on_text, on_thinking, on_tool_input
        self.blocks: dict[int, dict] = {}
        self._json: dict[int, str] = {}

    def take(self, event: dict) -> bool:
        if "contentBlockStart" in event:
            start, index = event["contentBlockStart"].get("start") or {}, event["contentBlockStart"]["contentBlockIndex"]
            if "toolUse" in start:
                self.blocks[index] = {"type": "tool_use", "id": start["toolUse"]["toolUseId"],
                                      "name": start["toolUse"]["name"], "input": {}}
                self._json[index] = ""
        elif "contentBlockDelta" in event:
            payload = event["contentBlockDelta"]
            self._delta(payload.get("contentBlockIndex", 0), payload.get("delta") or {})
        elif "contentBlockStop" in event:
            index = event["contentBlockStop"].get("contentBlockIndex", 0)
            if index in self._json:
                self.blocks[index]["input"] = _parsed_input(self._json.pop(index))
        else:
            return False
        return True

    def _delta(self, index: int, delta: dict) -> None:
        if "text" in delta:
            block = self.blocks.setdefault(index, {"type": "text", "text": ""})
            block["text"] += delta["text"]
            if self.on_text and delta["text"]:
                self.on_text(delta["text"])
        elif "reasoningContent" in delta:
            reasoning = delta["reasoningContent"]
            if "redactedContent" in reasoning:  # bytes from boto3; the Messages API's `data` is a string
                data = base64.b64encode(reasoning["redactedContent"]).decode()
                block = self.blocks.setdefault(index, {"type": "redacted_thinking", "data": ""})
                block["data"] += data
                return
            block = self.blocks.setdefault(index, {"type": "thinking", "thinking": "", "signature": ""})
            if text := reasoning.get("text"):
                block["thinking"] += text
                if self.on_thinking:
                    self.on_thinking(text)
            block["signature"] += reasoning.get("signature", "")
        elif "toolUse" in delta:
            self._json[index] = self._json.get(index, "") + delta["toolUse"].get("input", "")
            _tool_input(self.on_tool_input, self.blocks.get(index) or {}, delta["toolUse"].get("input", ""))
        elif "citation" in delta:
            self.blocks.setdefault(index, {"type": "text", "text": ""}).setdefault("citations", []).append(
                delta["citation"])

    def finish(self) -> tuple[dict, ...]:
        return _finished(self.blocks)


def _tool_input(on_tool_input, block: dict, piece: str) -> None:
    """A piece of a client tool call's input, passed on as it streams (not a server tool's)."""
    if on_tool_input and piece and block.get("type") == "tool_use":
        on_tool_input({"id": block["id"], "name": block["name"], "partial_json": piece})


def converse_block(block: dict) -> dict | None:
    """One Messages API block as a Converse content block; None for a type this does not know."""
    kind = block.get("type")
    if kind == "text":
        return {"text": block["text"]}
    if kind == "thinking":
        return {"reasoningContent": {"reasoningText": {"text": block["thinking"], "signature": block["signature"]}}}
    if kind == "redacted_thinking":
        return {"reasoningContent": {"redactedContent": base64.b64decode(block["data"])}}
    if kind == "tool_use":
        return {"toolUse": {"toolUseId": block["id"], "name": block["name"], "input": block.get("input") or {}}}
    if kind == "tool_result":
        content = block.get("content")
        items = [{"text": content}] if isinstance(content, str) else [
            {"text": item["text"]} for item in content or [] if item.get("type") == "text"]
        return {"toolResult": {"toolUseId": block["tool_use_id"], "content": items,
                               **({"status": "error"} if block.get("is_error") else {})}}
    return None


def text_of_blocks(blocks) -> str:
    """The visible text of a reply's blocks (thinking and tool calls left out)."""
    return "".join(block.get("text", "") for block in blocks if block.get("type") == "text")


def without_thinking(content):
    """A message's content without its thinking blocks; a reply that was only text again a string."""
    if isinstance(content, str):
        return content
    kept = [block for block in content if block.get("type") not in THINKING_TYPES]
    if all(block.get("type") == "text" and set(block) == {"type", "text"} for block in kept):
        return text_of_blocks(kept)
    return kept


def assistant_content(blocks, text: str) -> str | list[dict]:
    """What a reply stores and sends back: its blocks when it has more than plain text
    (thinking, tool calls, citations), else the text, as every reply was before blocks."""
    if any(block.get("type") != "text" or set(block) != {"type", "text"} for block in blocks):
        return [dict(block) for block in blocks]
    return text


def visible_tokens(output_tokens: int, thinking_tokens: int, blocks) -> int:
    """A reply's size in the window: its output less its thinking, which the API does not
    count again when earlier turns' thinking blocks are sent back (the context-windows
    guide). The thinking's size is the provider's figure, else an estimate from its text."""
    if not thinking_tokens:
        thinking_tokens = sum(max(1, (len(block.get("thinking") or block.get("data", "")) + 3) // 4)
                              for block in blocks if block.get("type") in THINKING_TYPES)
    return max(1, output_tokens - thinking_tokens)


def content_text(content) -> str:
    """A message's text, whatever its shape (a summary or a check reads only the words)."""
    return content if isinstance(content, str) else text_of_blocks(content)
