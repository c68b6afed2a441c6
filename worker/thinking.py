"""What extended thinking adds to a turn (shared/thinking.py has the settings): the setting
the turn uses, and the reply's blocks and thinking tokens in the job, the log and the window."""
from __future__ import annotations

from shared.model import ModelReply
from shared.model.blocks import assistant_content, visible_tokens
from shared.models import Conversation


def turn_setting(conversation: Conversation, request: dict) -> dict | None:
    """The message's own thinking setting (POST .../messages, in the job's request as the
    claim read it), else the conversation's; both were checked against the model when set."""
    return request["thinking"] if "thinking" in request else conversation.thinking


def reply_content(reply: ModelReply) -> str | list[dict]:
    """What the log and the window keep: the blocks (thinking with its signature) or the text."""
    return assistant_content(reply.blocks, reply.text)


def window_tokens(reply: ModelReply) -> int:
    """The reply's size in the window; the log keeps the same, so a rebuilt window measures alike."""
    return visible_tokens(reply.output_tokens, reply.thinking_tokens, reply.blocks)


def job_fields(reply: ModelReply) -> dict:
    """The reply's content blocks for the job, when it has more than its text."""
    content = reply_content(reply)
    return {"blocks": content} if isinstance(content, list) else {}


def usage_fields(reply: ModelReply) -> dict:
    """Of output_tokens (priced as output), those spent thinking, when the provider says."""
    return {"thinking_tokens": reply.thinking_tokens} if reply.thinking_tokens else {}
