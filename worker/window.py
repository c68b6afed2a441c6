"""Loading a conversation's context window: from Redis, or rebuilt from the log."""
from __future__ import annotations

import logging

import redis
from sqlalchemy import select

from shared.bootstrap import Services
from shared.memory import ConversationMemory
from shared.models import Conversation, Turn

log = logging.getLogger(__name__)


def load_window(services: Services, conversation: Conversation) -> ConversationMemory:
    """The cached window if it is current, else one rebuilt from the log."""
    budget = services.settings.max_context_tokens
    try:
        cached = services.windows.get(conversation.conversation_id)
    except redis.RedisError as error:
        log.warning("window cache unavailable, rebuilding: %s", error)
        cached = None
    if (cached is not None and cached.turn_seq == conversation.turn_count and cached.max_tokens == budget
            and all(message.seq for message in cached.messages)):  # windows cached before turns were numbered
        return cached
    return rebuild_window(services, conversation)


def rebuild_window(services: Services, conversation: Conversation) -> ConversationMemory:
    """Read only the newest turns that can fit the budget, newest first, then replay them."""
    budget = services.settings.max_context_tokens
    needed, tokens = [], 0
    with services.sessions() as session:
        rows = session.execute(
            select(Turn.seq, Turn.log_key, Turn.user_tokens, Turn.assistant_tokens)
            .where(Turn.conversation_id == conversation.conversation_id,
                   Turn.seq <= conversation.turn_count)
            .order_by(Turn.seq.desc())
            .execution_options(yield_per=100)
        )
        for row in rows:
            needed.append(row)
            tokens += row.user_tokens + row.assistant_tokens
            if tokens > budget:  # this turn may still fit in part (its reply), none before it can
                break
    memory = ConversationMemory(budget, turn_seq=conversation.turn_count)
    for row in reversed(needed):
        entry = services.store.get(row.log_key)
        if entry is None:
            raise LookupError(f"log entry {row.log_key} of turn {row.seq} is missing")
        for message in entry["messages"]:
            memory.update_memory(message["role"], message["content"], message["tokens"], seq=row.seq)
        overhead = entry.get("prompt_overhead") or {}
        memory.prompt_overhead, memory.overhead_key = overhead.get("tokens"), overhead.get("key")
    return memory


def save_window(services: Services, conversation_id: object, memory: ConversationMemory) -> None:
    try:
        services.windows.put(conversation_id, memory)
    except redis.RedisError as error:  # the next turn rebuilds it
        log.warning("could not cache window of %s: %s", conversation_id, error)
