"""Reading a conversation: a page of messages by cursor, all of it, or an export stream.

The turns table already maps each turn's seq to its log object, so a page is one keyset
query on the (conversation_id, seq) unique index for just that page's turns, then their
objects read at once (`LogStore.get_many`). A page costs one query and at most
limit / 2 + 1 GETs, in about one storage round trip, at turn 10 as at turn 10,000. The
per-turn objects stay the only copy of the text, so nothing is compacted, rewritten or
kept twice. Only committed turns are read: a turn still running has no row yet.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ApiError
from shared.bootstrap import Services
from shared.models import Conversation, Turn

log = logging.getLogger("parley.api")

# A turn is a user message and its reply, so message n is in turn (n + 1) // 2; the
# conversation's `summary.through_message` counts the same way.
MESSAGES_PER_TURN = 2
# Reads in flight for one whole-conversation read or export: enough to hide storage
# latency, well under the process's READ_THREADS so pages are not starved meanwhile.
READ_AHEAD = 32
# Turn rows fetched per query while exporting: one short query per batch, no cursor held open.
EXPORT_BATCH = 500
_CURSOR_PREFIX = "seq:"


def encode_cursor(message_seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{message_seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raw = ""
    number = raw.removeprefix(_CURSOR_PREFIX)
    if not raw.startswith(_CURSOR_PREFIX) or not number.isdigit() or len(number) > 12:
        raise ApiError(400, "invalid_request", f"{field}: not a cursor this API returned.")
    return int(number)


def _message_seq(turn_seq: int, index: int) -> int:
    return (turn_seq - 1) * MESSAGES_PER_TURN + index + 1


def _turn_of(message_seq: int) -> int:
    return (message_seq - 1) // MESSAGES_PER_TURN + 1


def _messages(row, entry: dict | None) -> list[dict]:
    """A turn's messages as the API shows them; none if its log entry is missing."""
    if entry is None:
        log.error("log entry %s of turn %s is missing", row.log_key, row.seq)
        return []
    return [{"seq": _message_seq(row.seq, index), "role": message["role"], "content": message["content"],
             "created_at": message["created_at"], "job_id": str(row.job_id)}
            for index, message in enumerate(entry["messages"])]


def _with_entries(services: Services, rows: Iterable, ahead: int) -> Iterator[tuple[object, dict | None]]:
    """(row, log entry) for each turn row in order, reading up to `ahead` entries at once."""
    taken: deque = deque()

    def keys() -> Iterator[str]:
        for row in rows:
            taken.append(row)
            yield row.log_key

    for entry in services.store.get_many(keys(), ahead):
        yield taken.popleft(), entry


def _turn_rows(conversation_id: uuid.UUID):
    return select(Turn.seq, Turn.job_id, Turn.log_key).where(Turn.conversation_id == conversation_id)


@dataclass
class Page:
    messages: list[dict]
    has_more: bool  # more messages beyond the last one, in the page's order


def read_page(services: Services, session: Session, conversation: Conversation, limit: int,
              order: Literal["asc", "desc"] = "desc", before: int | None = None, after: int | None = None) -> Page:
    """Up to `limit` messages with after < seq < before, newest first unless order is asc."""
    query = _turn_rows(conversation.conversation_id)
    if before is not None:
        if before <= 1:
            return Page([], False)
        query = query.where(Turn.seq <= _turn_of(before - 1))
    if after is not None:
        query = query.where(Turn.seq >= _turn_of(after + 1))
    # Enough turns for limit + 1 messages (the one past the page says whether there is
    # more), with a turn cut by a cursor giving only one of its messages.
    turns = limit // MESSAGES_PER_TURN + 2
    newest_first = order == "desc"
    rows = session.execute(query.order_by(Turn.seq.desc() if newest_first else Turn.seq).limit(turns)).all()
    # Which messages a turn holds follows from its seq, so only the page's own turns are read.
    indexes = range(MESSAGES_PER_TURN)
    seqs = [_message_seq(row.seq, i) for row in rows for i in (reversed(indexes) if newest_first else indexes)]
    seqs = [seq for seq in seqs if (before is None or seq < before) and (after is None or seq > after)]
    needed = {_turn_of(seq) for seq in seqs[:limit]}
    found = {message["seq"]: message
             for row, entry in _with_entries(services, [r for r in rows if r.seq in needed], ahead=len(needed) or 1)
             for message in _messages(row, entry)}
    return Page([found[seq] for seq in seqs[:limit] if seq in found], len(seqs) > limit)


def read_all(services: Services, session: Session, conversation: Conversation) -> list[dict]:
    """Every message, oldest first (GET /v1/conversations/{id}, the seed's /get_conversation)."""
    rows = session.execute(_turn_rows(conversation.conversation_id).order_by(Turn.seq)).all()
    return [message for row, entry in _with_entries(services, rows, READ_AHEAD) for message in _messages(row, entry)]


def export_lines(services: Services, conversation_id: uuid.UUID, through_turn: int) -> Iterator[bytes]:
    """The conversation up to `through_turn` as NDJSON, one message a line, oldest first.

    Turn rows come in batches of EXPORT_BATCH and entries are read READ_AHEAD at a time,
    so memory holds a batch, never the conversation. A conversation deleted meanwhile
    ends the stream early; a storage outage breaks it (the chunked body never ends), so a
    cut-off export cannot pass for a complete one.
    """
    def rows() -> Iterator:
        last = 0
        while True:
            with services.sessions() as session:
                batch = session.execute(_turn_rows(conversation_id).where(Turn.seq > last, Turn.seq <= through_turn)
                                        .order_by(Turn.seq).limit(EXPORT_BATCH)).all()
            if not batch:
                return
            yield from batch
            last = batch[-1].seq

    for row, entry in _with_entries(services, rows(), READ_AHEAD):
        for message in _messages(row, entry):
            yield (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
