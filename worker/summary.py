"""CONTEXT_STRATEGY=summarize: a rolling summary of the turns that left the window.

The summary covers turns 1..`summary_seq` and is stored on the conversation row.
It is sent right after the system prompt, so changing it changes the prompt's cached
prefix: it is refreshed only when the window has dropped turns it does not cover, and
the window drops turns only in steps (shared/memory.py), when the prefix changes
anyway. One model call then folds the dropped turns in, before the reply is asked for.
If it fails the turn goes on with the old summary (a stale summary is better than no
reply), and the next turn tries again.
"""
from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy import select, update

from shared.bootstrap import Services
from shared.cancel import Cancelled, CancelToken
from shared.db import reading
from shared.files import described_text
from shared.log_entry import LogEntry, LoggedMessage, stored_entry
from shared.memory import ConversationMemory
from shared.model import ModelError, ModelReply, ModelRequest
from shared.models import Conversation, Turn
from worker import metrics
from worker.usage import add_daily_usage, count_quota, priced

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "You keep a running summary of a conversation between a user and an assistant. Fold the new "
    "messages into the summary so far. Keep names, facts, numbers, decisions, the user's preferences "
    "and open questions; drop pleasantries. Answer with the updated summary only, in plain prose.")


def summary_for_turn(services: Services, conversation: Conversation, memory: ConversationMemory, user_id: uuid.UUID,
                     model: str, cancel: CancelToken) -> str | None:
    """The summary to send ahead of the window, brought up to date first if turns fell out of it."""
    shown = memory.sent_messages()
    hidden_through = (shown[0].seq if shown else conversation.turn_count + 1) - 1  # turns the window leaves out
    if conversation.summary_seq >= hidden_through:
        return conversation.summary
    target = hidden_through  # exactly what left the window: what it still shows needs no summary
    source = _read_turns(services, conversation, target)
    if not source:  # the turns' log entries are gone; nothing to fold in
        return conversation.summary
    started = time.monotonic()
    try:
        reply = services.provider.complete(ModelRequest(
            system=INSTRUCTIONS, messages=[{"role": "user", "content": _prompt(conversation.summary, source)}],
            model=model, max_tokens=services.settings.summary_max_tokens, max_retries=0,
            cancel=cancel))
    except ModelError as error:
        metrics.model_call(time.monotonic() - started, outcome=error.kind)
        log.warning("conversation %s: summary not refreshed (%s); using the one through turn %s",
                    conversation.conversation_id, error.kind, conversation.summary_seq)
        return conversation.summary
    metrics.model_call(time.monotonic() - started, reply.prompt_tokens, reply.output_tokens)
    if cancel.cancelled:
        raise Cancelled()
    summary = reply.text.strip() or conversation.summary
    _store(services, conversation, user_id, reply, summary, target)
    count_quota(services, user_id, reply)
    return summary


def _read_turns(services: Services, conversation: Conversation,
                target: int) -> list[tuple[int, tuple[LoggedMessage, ...]]]:
    """Messages of turns after the summary up to `target`, from the log. At most a window's
    worth, newest first: after a long gap (the strategy switched on late) the oldest are skipped."""
    budget, tokens, turns = services.settings.max_context_tokens, 0, []
    with reading(services.sessions) as session:
        rows = session.execute(
            select(Turn.seq, Turn.log_key, Turn.entry, Turn.user_tokens, Turn.assistant_tokens)
            .where(Turn.conversation_id == conversation.conversation_id,
                   Turn.seq > conversation.summary_seq, Turn.seq <= target)
            .order_by(Turn.seq.desc())).all()
    for row in rows:
        tokens += row.user_tokens + row.assistant_tokens
        if turns and tokens > budget:
            log.warning("conversation %s: turns %s..%s are too long to summarize; left out",
                        conversation.conversation_id, conversation.summary_seq + 1, row.seq)
            break
        raw = stored_entry(services.store, row)
        entry = LogEntry.from_dict(raw) if raw is not None else None
        if entry is not None and entry.sendable:  # a refused turn never goes back to the model
            turns.append((row.seq, entry.messages))
    return turns[::-1]


def _prompt(summary: str | None, turns: list[tuple[int, tuple[LoggedMessage, ...]]]) -> str:
    lines = [f"{message.role.capitalize()}: {described_text(message.content)}" for _, messages in turns
             for message in messages]
    return (f"Summary so far:\n{summary or '(none yet)'}\n\nNew messages:\n" + "\n\n".join(lines)
            + "\n\nWrite the updated summary.")


def _store(services: Services, conversation: Conversation, user_id: uuid.UUID, reply: ModelReply,
           summary: str | None, target: int) -> None:
    """Save the summary unless another turn saved a newer one meanwhile; its tokens count
    towards the conversation's and the user's usage either way (they were spent)."""
    cost = priced(services, reply)
    totals = {name: getattr(Conversation, name) + value for name, value in reply.usage.items()}
    totals["cost_usd"] = Conversation.cost_usd + cost
    with services.sessions.begin() as session:
        saved = session.execute(
            update(Conversation)
            .where(Conversation.conversation_id == conversation.conversation_id,
                   Conversation.summary_seq == conversation.summary_seq)
            .values(summary=summary, summary_seq=target, **totals)).rowcount
        if not saved:
            session.execute(update(Conversation)
                            .where(Conversation.conversation_id == conversation.conversation_id).values(**totals))
        add_daily_usage(session, user_id, reply, turns=0, cost=cost)
