"""What Claude's answer means for the conversation: one table from the stop reason
(Anthropic's `stop_reason`, Bedrock Converse's `stopReason`) and the text to an outcome.

- `complete`: stored, and sent back on later turns.
- `truncated` (`max_tokens`, `model_context_window_exceeded`): stored and sent back; the
  user asks for the rest with a new message (this works on models without prefill).
- `refused` (`refusal`; Bedrock's `guardrail_intervened`, `content_filtered`): stored for the
  history but never sent to the model again, as the docs require ("reset the context,
  or the refusals continue").
- `empty` (no text at all, or only whitespace): never stored — the Messages API refuses an
  empty text block, so storing it would fail every later turn; the job fails `empty_reply`.

Any other stop reason (`end_turn`, `stop_sequence`, `tool_use`, `pause_turn`, one not yet
documented) with text is `complete`, its stop reason kept as it came.
"""
from __future__ import annotations

from typing import Literal

Outcome = Literal["complete", "truncated", "refused", "empty"]

TRUNCATED = frozenset({"max_tokens", "model_context_window_exceeded"})
REFUSED = frozenset({"refusal", "guardrail_intervened", "content_filtered"})


def reply_outcome(stop_reason: str | None, text: str) -> Outcome:
    if stop_reason in REFUSED:  # even with partial text: that text is never sent again
        return "refused"
    if not text.strip():
        return "empty"
    return "truncated" if stop_reason in TRUNCATED else "complete"


def sendable(outcome: str | None) -> bool:
    """Whether a stored turn goes back to the model on later turns (old entries have no outcome)."""
    return outcome not in ("refused", "empty")


def empty_reply_message(stop_reason: str | None) -> str:
    if stop_reason in TRUNCATED:
        return ("The reply was cut off (MAX_TOKENS or the model's context window) before any text; "
                "nothing was stored. Send the message again, or a shorter one.")
    return ("Claude ended its turn without any text; nothing was stored and the conversation is unchanged. "
            "Send the message again, or rephrase it.")


def refusal_message(stop_details: dict | None) -> str:
    """What the user is told about a refused message."""
    explanation = (stop_details or {}).get("explanation")
    return ("Claude declined to answer this message" + (f": {explanation}" if explanation else ".")
            + " It stays in the history but is not sent to Claude again; rephrase it to go on.")
