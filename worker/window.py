"""Loading a conversation's context window: from Redis, or rebuilt from the log."""
from __future__ import annotations

import logging

import redis
from sqlalchemy import select

from shared.bootstrap import Services
from shared.db import reading
from shared.memory import ConversationMemory
from shared.log_entry import LogEntry, stored_entry
from shared.models import Conversation, Turn

log = logging.getLogger(__name__)


def load_window(services: Services, conversation: Conversation) -> ConversationMemory:
    """The cached window if it is current, else one rebuilt from the log. A conversation's
    first turn has nothing to load: no cache read, no query."""
    settings = services.settings
    if conversation.turn_count == 0:
        return ConversationMemory(settings.max_context_tokens, turn_seq=0, low_water=settings.window_low_water)
    try:
        cached = services.windows.get(conversation.conversation_id)
    except redis.RedisError as error:
        log.warning("window cache unavailable, rebuilding: %s", error)
        cached = None
    if (cached is not None and cached.turn_seq == conversation.turn_count
            and (cached.max_tokens, cached.low_water) == (settings.max_context_tokens, settings.window_low_water)
            and all(message.seq for message in cached.messages)):  # windows cached before turns were numbered
        return cached
    return rebuild_window(services, conversation)


def rebuild_window(services: Services, conversation: Conversation) -> ConversationMemory:
    """Replay the turns from where the newest turn's window started (stored with it), so the
    rebuilt window drops turns where the cached one did. Turns stored before windows were
    recorded: the newest whole turns that fit the budget."""
    budget, low_water = services.settings.max_context_tokens, services.settings.window_low_water
    with reading(services.sessions) as session:
        start = session.scalar(select(Turn.window_start).where(
            Turn.conversation_id == conversation.conversation_id, Turn.seq == conversation.turn_count))
        query = (select(Turn.seq, Turn.log_key, Turn.entry, Turn.user_tokens, Turn.assistant_tokens)
                 .where(Turn.conversation_id == conversation.conversation_id, Turn.seq <= conversation.turn_count)
                 .order_by(Turn.seq.desc()).execution_options(yield_per=100))
        if start is not None:
            needed = session.execute(query.where(Turn.seq >= start)).all()
        else:
            needed, tokens = [], 0
            for row in session.execute(query):
                tokens += row.user_tokens + row.assistant_tokens
                if tokens > budget:
                    break
                needed.append(row)
    memory = ConversationMemory(budget, turn_seq=conversation.turn_count, low_water=low_water)
    for row in reversed(needed):
        raw = stored_entry(services.store, row)
        if raw is None:
            raise LookupError(f"log entry {row.log_key} of turn {row.seq} is missing")
        entry = LogEntry.from_dict(raw)
        memory.prompt_overhead, memory.overhead_key = entry.prompt_overhead, entry.overhead_key
        if not entry.sendable:  # a refused turn: shown in the history, never sent again
            continue
        for message in entry.messages:
            memory.update_memory(message.role, message.content, message.tokens, seq=row.seq)
    return memory


def save_window(services: Services, conversation_id: object, memory: ConversationMemory) -> None:
    try:
        services.windows.put(conversation_id, memory)
    except redis.RedisError as error:  # the next turn rebuilds it
        log.warning("could not cache window of %s: %s", conversation_id, error)
