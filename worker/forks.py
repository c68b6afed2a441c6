"""A new fork's log objects: written after the fork is made, from its own turn rows.

Forking copies the turn rows (each with its log entry) in one statement, so a fork of
5,000 turns is made in one short transaction and is readable at once: history pages and
window rebuilds read the rows' entries. The objects under the fork's own prefix, the
verbatim log, are written here afterwards, from the fork's rows and not from the
parent's objects, so deleting the parent meanwhile changes nothing. Writing them again
is harmless (same keys, same entries), so a re-sent task is too.
"""
from __future__ import annotations

import logging
import uuid

from sqlalchemy import select, text, update

from shared.bootstrap import Services
from shared.db import reading
from shared.models import Conversation, Turn
from shared.storage import turn_key

log = logging.getLogger(__name__)

# Entries read and written per round: one short query, then that many PUTs at once.
COPY_BATCH = 500

# Forks whose copy has not ended a soft time limit after they were made: its task was
# lost (broker restart, failed send) or killed. Re-sent by the sweeper.
STALLED_FORKS = text("""
    SELECT conversation_id FROM conversations
     WHERE log_copy_pending AND created_at < now() - make_interval(secs => :grace)
     ORDER BY created_at LIMIT 100
""")


def copy_fork_log(services: Services, conversation_id: str) -> int:
    """Write the log objects of a fork's copied turns; returns how many were written."""
    fork_id = uuid.UUID(conversation_id)
    with reading(services.sessions) as session:
        fork = session.get(Conversation, fork_id)
        if fork is None or not fork.log_copy_pending:
            return 0
        prefix, through = fork.s3_file_location, fork.forked_from_turn or 0
    written, last = 0, 0
    while True:
        with reading(services.sessions) as session:
            batch = session.execute(
                select(Turn.seq, Turn.entry)
                .where(Turn.conversation_id == fork_id, Turn.seq > last, Turn.seq <= through)
                .order_by(Turn.seq).limit(COPY_BATCH)).all()
        if not batch:
            break
        missing = [row.seq for row in batch if row.entry is None]
        if missing:  # its parent had lost them too (api/forks.py fills every copy it can)
            log.error("fork %s: turns %s have no log entry to write", fork_id, missing)
        services.store.put_many([(turn_key(prefix, row.seq), row.entry) for row in batch if row.entry is not None])
        written += len(batch) - len(missing)
        last = batch[-1].seq
    with services.sessions.begin() as session:
        done = session.execute(update(Conversation).where(Conversation.conversation_id == fork_id)
                               .values(log_copy_pending=False)).rowcount
    if not done:  # deleted while copying: what was written after its deletion must go too
        services.store.delete_prefix(prefix)
        return 0
    log.info("fork %s: %d log entries written", fork_id, written)
    return written
