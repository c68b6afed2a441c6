"""The context window: the newest whole turns that fit the token budget, cache-stable.

The window is always valid for the Messages API: it starts with a user
message, roles alternate, and no message is ever cut.

Claude's prompt cache is a prefix cache, so the window must keep its head for
as long as it can: it grows turn by turn up to the budget (`max_tokens`), and
only when one more message would pass the budget does it drop its oldest whole
turns, all in one step, down to `low_water` × the budget. Every request between
two drops repeats the previous request's prefix and reads it from the cache;
a drop costs one cache write. Where the window starts (`window_start`) is
stored with each turn, so a window rebuilt from the log is the same one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import orjson

DEFAULT_LOW_WATER = 0.6


def estimate_tokens(text: str) -> int:
    """A rough count (about four characters a token) for text the model has not counted."""
    return max(1, (len(text) + 3) // 4)


def content_tokens(content: str | list[dict]) -> int:
    """A message's estimate: its text, and each attached file's estimate from its upload
    (images by pixels, PDFs by pages, shared/media.py); other blocks by their JSON."""
    if isinstance(content, str):
        return estimate_tokens(content)
    total = 0
    for block in content:
        if block.get("type") == "text":
            total += estimate_tokens(block.get("text", ""))
        elif "token_estimate" in block:
            total += int(block["token_estimate"])
        else:
            total += estimate_tokens(json.dumps(block, ensure_ascii=False))
    return max(1, total)


def _joined(first: str | list[dict], second: str | list[dict]) -> str | list[dict]:
    """Two same-role messages as one: text stays text; with blocks, the blocks of both."""
    if isinstance(first, str) and isinstance(second, str):
        return first + "\n\n" + second
    as_blocks = [c if isinstance(c, list) else [{"type": "text", "text": c}] for c in (first, second)]
    return [*as_blocks[0], *as_blocks[1]]


@dataclass(frozen=True)
class Message:
    role: str
    content: str | list[dict]  # text, or content blocks (attachments: shared/files.py)
    tokens: int
    seq: int = 0  # the turn it belongs to; 0 where unknown


class ConversationMemory:
    """The newest whole turns of a conversation whose tokens sum to at most `max_tokens`.

    A turn is a user message and what follows it up to the next user message.
    `turn_seq` is the last turn folded in, so a cached window can be checked
    against the conversation before it is trusted. `prompt_overhead` is what the
    model counts beyond the messages (system prompt, framing) for the prompt
    identified by `overhead_key`; with it a reply's reported input size tells the
    exact size of the message just sent (see `measure_last`).
    """

    def __init__(self, max_tokens: int, messages: list[Message] | None = None, turn_seq: int = 0,
                 prompt_overhead: int | None = None, overhead_key: str | None = None,
                 low_water: float = DEFAULT_LOW_WATER):
        if not 0 <= low_water <= 1:
            raise ValueError(f"low_water must be between 0 and 1, not {low_water!r}")
        self.max_tokens, self.low_water = max_tokens, low_water
        self.messages: list[Message] = []
        self.total_tokens = 0
        self.turn_seq = turn_seq
        self.prompt_overhead, self.overhead_key = prompt_overhead, overhead_key
        for message in messages or []:
            self._append(message)

    @classmethod
    def _restored(cls, max_tokens: int, messages: list[Message], turn_seq: int, prompt_overhead: int | None,
                  overhead_key: str | None, low_water: float) -> "ConversationMemory":
        """A window as it was saved: its messages were within the budget then, so they are
        taken whole, trimmed once if the budget shrank since, not appended one by one."""
        memory = cls(max_tokens, None, turn_seq, prompt_overhead, overhead_key, low_water)
        memory.messages, memory.total_tokens = messages, sum(m.tokens for m in messages)
        memory._trim()
        return memory

    def update_memory(self, role: str, content: str | list[dict], tokens: int | None = None, seq: int = 0) -> None:
        """Add a message; if the window would pass the budget, drop its oldest turns first."""
        if role not in ("user", "assistant"):
            raise ValueError(f"role must be user or assistant, not {role!r}")
        self._append(Message(role, content, tokens if tokens is not None else content_tokens(content), seq))

    @property
    def window_start(self) -> int:
        """The first turn the window holds (the turn after `turn_seq` when it is empty)."""
        return self.messages[0].seq if self.messages else self.turn_seq + 1

    def _append(self, message: Message) -> None:
        self.messages.append(message)
        self.total_tokens += message.tokens
        self._trim()

    def _turn_starts(self) -> list[int]:
        """Index of each turn's first message; leading assistant messages form a turn of their own."""
        return [i for i, m in enumerate(self.messages) if i == 0 or m.role == "user"]

    def _trim(self) -> None:
        """Within the budget: nothing changes. Past it: drop the oldest whole turns down to the
        low-water mark, never the newest turn, unless that turn alone is past the budget."""
        if self.total_tokens <= self.max_tokens:
            return
        target = int(self.max_tokens * self.low_water)
        starts = self._turn_starts()
        drop, total = 0, self.total_tokens
        for start, end in zip(starts, starts[1:]):  # every turn but the newest
            if total <= target:
                break
            total -= sum(m.tokens for m in self.messages[start:end])
            drop = end
        if total > self.max_tokens:  # the newest turn alone does not fit: it cannot be sent
            drop, total = len(self.messages), 0
        del self.messages[:drop]
        self.total_tokens = total

    def discard_last(self) -> None:
        """Take back the newest message: a refused one must never be sent again."""
        last = self.messages.pop()
        self.total_tokens -= last.tokens

    def _first_sent(self) -> int:
        return next((i for i, m in enumerate(self.messages) if m.role == "user"), len(self.messages))

    def sent_messages(self) -> list[Message]:
        """The messages `get_current_context` sends (a leading assistant message is not)."""
        return self.messages[self._first_sent():]

    def measure_last(self, prompt_tokens: int, prompt_key: str) -> int:
        """Size the newest message (just sent) by what the model counted, and return it.

        `prompt_tokens` is the whole input the model reported for the request sent
        from this window; `prompt_key` identifies its system prompt. Every other
        message's size is already what the model counted for it, so the rest of
        the count is the newest message's, once the overhead for this system
        prompt is known. The first request with a system prompt learns that
        overhead, keeping the newest message's estimate.
        """
        last = self.messages[-1]
        earlier = sum(m.tokens for m in self.sent_messages()) - last.tokens
        measured = prompt_tokens - earlier - (self.prompt_overhead or 0)
        if self.overhead_key != prompt_key or self.prompt_overhead is None or measured < 1:
            self.prompt_overhead, self.overhead_key = max(0, prompt_tokens - earlier - last.tokens), prompt_key
            return last.tokens
        self.messages[-1] = Message(last.role, last.content, measured, last.seq)
        self.total_tokens += measured - last.tokens
        self._trim()
        return measured

    def get_current_context(self) -> list[dict]:
        """The window as Messages API messages: from the first user message on,
        with consecutive same-role messages merged so roles alternate."""
        context: list[dict] = []
        for message in self.sent_messages():
            if context and context[-1]["role"] == message.role:
                context[-1] = {"role": message.role, "content": _joined(context[-1]["content"], message.content)}
            else:
                context.append({"role": message.role, "content": message.content})
        return context

    def to_json(self) -> str:
        # orjson: a full 32k-token window (~116 KB) is written in ~40 us, json.dumps takes ~1.5 ms.
        return orjson.dumps({
            "max_tokens": self.max_tokens,
            "low_water": self.low_water,
            "turn_seq": self.turn_seq,
            "prompt_overhead": self.prompt_overhead,
            "overhead_key": self.overhead_key,
            "messages": self.messages,  # orjson writes the dataclasses as dicts itself, without asdict's deep copy
        }).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> "ConversationMemory":
        data = orjson.loads(raw)
        # A window cached before low_water existed has none: 1.0 marks it, and load_window,
        # which finds it differs from WINDOW_LOW_WATER, rebuilds it from the log.
        return cls._restored(data["max_tokens"], [Message(**m) for m in data["messages"]], data["turn_seq"],
                             data.get("prompt_overhead"), data.get("overhead_key"), data.get("low_water", 1.0))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConversationMemory) and self.to_json() == other.to_json()
