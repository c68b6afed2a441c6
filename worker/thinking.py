"""What extended thinking adds to a turn (shared/thinking.py has the settings): the setting
the turn uses, and the reply's blocks and thinking tokens in the job, the log and the window."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from shared.bootstrap import Services
from shared.model import ModelReply
from shared.model.blocks import assistant_content, visible_tokens
from shared.models import Conversation, Job


def turn_setting(services: Services, conversation: Conversation, job_id: uuid.UUID) -> dict | None:
    """The message's own thinking setting (POST .../messages), else the conversation's;
    both were checked against the model when they were set."""
    with services.sessions() as session:
        request = session.scalar(select(Job.request).where(Job.id == job_id)) or {}
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
