"""Reading a conversation: a page of messages by cursor, all of it, or an export stream.

Each turn row keeps a copy of its log entry, written in the commit that records the
turn, so a page is one keyset query on the (conversation_id, seq) unique index for just
that page's turns and no storage request, at turn 100 as at turn 10,000; an export is
one query per batch. The log in object storage stays the verbatim record.

Turns committed before the copy was kept are read from the log, in parallel, and their
copies written back after checking each entry names its turn's seq and job: each such
turn costs one GET the first time it is read and none after. Only committed turns are
read: a turn still running has no row yet.
"""
from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Iterator, Literal

from sqlalchemy import bindparam, exc as sql_errors, select, update
from sqlalchemy.orm import Session

from shared.bootstrap import Services
from shared.db import reading
from shared.log_entry import LogEntry
from shared.model.blocks import without_thinking
from shared.models import Conversation, Turn
from shared.refusals import Invalid

log = logging.getLogger("parley.api")

# A turn is a user message and its reply, so message n is in turn (n + 1) // 2; the
# conversation's `summary.through_message` counts the same way.
MESSAGES_PER_TURN = 2
# Log reads in flight for older turns without a copy: enough to hide storage latency,
# well under the process's READ_THREADS so other requests are not starved meanwhile.
READ_AHEAD = 32
# Turn rows fetched per query while exporting: one short query per batch, no cursor held
# open. The first batch is small, so the first line goes out at once even when its turns
# must be read from the log.
FIRST_BATCH, EXPORT_BATCH = 50, 1000
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
        raise Invalid("invalid_request", f"{field}: not a cursor this API returned.")
    return int(number)


def _message_seq(turn_seq: int, index: int) -> int:
    return (turn_seq - 1) * MESSAGES_PER_TURN + index + 1


def turn_of(message_seq: int) -> int:
    return (message_seq - 1) // MESSAGES_PER_TURN + 1


def _messages(row, raw: dict | None, thinking: bool = False) -> list[dict]:
    """A turn's messages as the API shows them; none if its log entry is missing. A reply's
    thinking blocks only with `thinking` (include=thinking); without them a reply of plain
    text is a string again."""
    if raw is None:
        log.error("log entry %s of turn %s is missing", row.log_key, row.seq)
        return []
    entry = LogEntry.from_dict(raw)
    return [{"seq": _message_seq(row.seq, index), "role": message.role,
             "content": message.content if thinking or message.role != "assistant" else without_thinking(message.content),
             "created_at": message.created_at, "job_id": str(row.job_id),
             "outcome": entry.outcome if message.role == "assistant" or entry.outcome == "refused" else "complete"}
            for index, message in enumerate(entry.messages)]


def entries_of(services: Services, rows: list, ahead: int) -> dict[int, dict | None]:
    """The log entries of these turn rows, by seq: the rows' copies, else the log."""
    found = {row.seq: row.entry for row in rows if row.entry is not None}
    older = [row for row in rows if row.entry is None]
    if older:
        read = dict(zip((row.seq for row in older), services.store.get_many([row.log_key for row in older], ahead)))
        found.update(read)
        _keep_copies(services, older, read)
    return found


def _keep_copies(services: Services, rows: list, read: dict[int, dict | None]) -> None:
    """Write back the copies of entries just read from the log that name their own turn.
    Only where no copy is kept yet, and only for the same job: a conversation deleted or
    forked meanwhile is untouched. A failure costs nothing but the next read's GETs."""
    copies = [{"row_id": row.id, "job": row.job_id, "entry": read[row.seq]} for row in rows
              if isinstance(read.get(row.seq), dict) and read[row.seq].get("seq") == row.seq
              and read[row.seq].get("job_id") == str(row.job_id)]
    if not copies:
        return
    statement = (update(Turn).where(Turn.id == bindparam("row_id"), Turn.job_id == bindparam("job"), Turn.entry.is_(None))
                 .values(entry=bindparam("entry")))
    try:
        with services.sessions.begin() as session:
            session.connection().execute(statement, copies)
    except sql_errors.SQLAlchemyError as error:
        log.warning("could not keep copies of %d log entries: %s", len(copies), error)


def turn_rows(conversation_id: uuid.UUID):
    return (select(Turn.id, Turn.seq, Turn.job_id, Turn.log_key, Turn.entry)
            .where(Turn.conversation_id == conversation_id))


@dataclass
class Page:
    messages: list[dict]
    has_more: bool  # more messages beyond the last one, in the page's order


def read_page(services: Services, session: Session, conversation: Conversation, limit: int,
              order: Literal["asc", "desc"] = "desc", before: int | None = None, after: int | None = None,
              thinking: bool = False) -> Page:
    """Up to `limit` messages with after < seq < before, newest first unless order is asc."""
    query = turn_rows(conversation.conversation_id)
    if before is not None:
        if before <= 1:
            return Page([], False)
        query = query.where(Turn.seq <= turn_of(before - 1))
    if after is not None:
        query = query.where(Turn.seq >= turn_of(after + 1))
    # Enough turns for limit + 1 messages (the one past the page says whether there is
    # more), with a turn cut by a cursor giving only one of its messages.
    turns = limit // MESSAGES_PER_TURN + 2
    newest_first = order == "desc"
    rows = session.execute(query.order_by(Turn.seq.desc() if newest_first else Turn.seq).limit(turns)).all()
    # Which messages a turn holds follows from its seq, so only the page's own turns are read.
    indexes = range(MESSAGES_PER_TURN)
    seqs = [_message_seq(row.seq, i) for row in rows for i in (reversed(indexes) if newest_first else indexes)]
    seqs = [seq for seq in seqs if (before is None or seq < before) and (after is None or seq > after)]
    needed = {turn_of(seq) for seq in seqs[:limit]}
    page_rows = sorted((row for row in rows if row.seq in needed), key=lambda row: row.seq)
    entries = entries_of(services, page_rows, ahead=len(page_rows) or 1)
    found = {message["seq"]: message for row in page_rows for message in _messages(row, entries[row.seq], thinking)}
    return Page([found[seq] for seq in seqs[:limit] if seq in found], len(seqs) > limit)


def read_all(services: Services, session: Session, conversation: Conversation, thinking: bool = False) -> list[dict]:
    """Every message, oldest first (GET /v1/conversations/{id}, the seed's /get_conversation)."""
    rows = session.execute(turn_rows(conversation.conversation_id).order_by(Turn.seq)).all()
    entries = entries_of(services, rows, READ_AHEAD)
    return [message for row in rows for message in _messages(row, entries[row.seq], thinking)]


def export_lines(services: Services, conversation_id: uuid.UUID, through_turn: int) -> Iterator[bytes]:
    """The conversation up to `through_turn` as NDJSON, one message a line, oldest first.

    Turn rows come in batches, their entries with them, so memory holds a batch,
    never the conversation. The first batch is read before this returns, so an outage at
    the start is an ordinary 503; one later breaks the stream (the chunked body never
    ends), so a cut-off export cannot pass for a complete one. A conversation deleted
    meanwhile ends the stream early.
    """
    lines = _export(services, conversation_id, through_turn)
    first = next(lines, None)
    return itertools.chain([] if first is None else [first], lines)


def _export(services: Services, conversation_id: uuid.UUID, through_turn: int) -> Iterator[bytes]:
    last = 0
    while True:
        with reading(services.sessions) as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                return
            batch = session.execute(turn_rows(conversation_id).where(Turn.seq > last, Turn.seq <= through_turn)
                                    .order_by(Turn.seq).limit(EXPORT_BATCH if last else FIRST_BATCH)).all()
            if not batch:
                return
        entries = entries_of(services, batch, READ_AHEAD)
        for row in batch:
            for message in _messages(row, entries[row.seq]):
                yield (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        last = batch[-1].seq
