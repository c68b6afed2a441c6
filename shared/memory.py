"""The context window: the newest messages that fit the token budget.

The window is always valid for the Messages API: it starts with a user
message, roles alternate, and no message is ever cut.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass


def estimate_tokens(text: str) -> int:
    """A rough count (about four characters a token) for text the model has not counted."""
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    tokens: int


class ConversationMemory:
    """The newest messages of a conversation whose tokens sum to at most `max_tokens`.

    `turn_seq` is the last turn folded in, so a cached window can be checked
    against the conversation before it is trusted.
    """

    def __init__(self, max_tokens: int, messages: list[Message] | None = None, turn_seq: int = 0):
        self.max_tokens = max_tokens
        self.messages: list[Message] = []
        self.total_tokens = 0
        self.turn_seq = turn_seq
        for message in messages or []:
            self._append(message)

    def update_memory(self, role: str, content: str, tokens: int | None = None) -> None:
        """Add a message and drop the oldest ones that no longer fit."""
        if role not in ("user", "assistant"):
            raise ValueError(f"role must be user or assistant, not {role!r}")
        self._append(Message(role, content, tokens if tokens is not None else estimate_tokens(content)))

    def _append(self, message: Message) -> None:
        self.messages.append(message)
        self.total_tokens += message.tokens
        drop = 0
        while self.total_tokens > self.max_tokens and drop < len(self.messages):
            self.total_tokens -= self.messages[drop].tokens
            drop += 1
        if drop:
            del self.messages[:drop]

    def get_current_context(self) -> list[dict]:
        """The window as Messages API messages: from the first user message on,
        with consecutive same-role messages merged so roles alternate."""
        start = next((i for i, m in enumerate(self.messages) if m.role == "user"), len(self.messages))
        context: list[dict] = []
        for message in self.messages[start:]:
            if context and context[-1]["role"] == message.role:
                context[-1] = {"role": message.role, "content": context[-1]["content"] + "\n\n" + message.content}
            else:
                context.append({"role": message.role, "content": message.content})
        return context

    def to_json(self) -> str:
        return json.dumps({
            "max_tokens": self.max_tokens,
            "turn_seq": self.turn_seq,
            "messages": [asdict(m) for m in self.messages],
        }, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "ConversationMemory":
        data = json.loads(raw)
        return cls(data["max_tokens"], [Message(**m) for m in data["messages"]], data["turn_seq"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConversationMemory) and self.to_json() == other.to_json()
