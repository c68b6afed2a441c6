"""Forks: a new conversation holding the first turns of another; edit and regenerate.

What `seq` means here is what GET /v1/conversations/{id}/messages shows: message seq,
turn n holding the user's message 2n-1 and the reply 2n. A fork holds whole turns, so
it is made at a reply's seq (or 0, for a fork with no turns). Edit names the user
message to replace; regenerate names either message of the turn to answer again. Both
fork just before that turn and submit the message to the fork, through the same path as
POST .../messages (quota, in-flight cap, idempotency). The original is never written.

A fork is made in one transaction: the conversation row, then its turn rows copied from
the parent's by one INSERT ... SELECT, whatever the number of turns. Each copied row
keeps the job that wrote it (the history shows who wrote a message) and its copy of the
log entry, so the fork is readable at once and owes the parent nothing; its own log
objects are written afterwards by worker/forks.py from those rows. Tokens and cost start
at zero: nothing was spent on the fork. A summary carries over only if it covers no
turn past the fork; otherwise the next turn summarizes again as needed.
"""
from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from api import history
from api.file_service import split_content
from api.pages import newest_first
from api.service import create_conversation, submit_message
from shared.bootstrap import Services
from shared.log_entry import LogEntry, stored_entry
from shared.models import ACTIVE_STATUSES, Conversation, Job, Turn, User
from shared.refusals import Conflict, Invalid, NotFound

MESSAGES_PER_TURN = history.MESSAGES_PER_TURN

# The fork's rows: the parent's, under the fork's id and log prefix (storage.turn_key's
# format), usage zeroed (nothing of it was spent on the fork), the rest as it was.
_COPY_TURNS = text("""
    INSERT INTO turns (conversation_id, seq, job_id, log_key, user_tokens, assistant_tokens, input_tokens,
                       output_tokens, cache_creation_input_tokens, cache_read_input_tokens, cost_usd,
                       window_start, entry, created_at)
    SELECT :fork, seq, job_id, :prefix || 'turns/' || lpad(seq::text, 10, '0') || '.json',
           user_tokens, assistant_tokens, 0, 0, 0, 0, 0, window_start, entry, created_at
      FROM turns WHERE conversation_id = :parent AND seq <= :through
""")


def fork_origin(conversation: Conversation) -> dict | None:
    """`forked_from` as the API shows it: the parent and the reply seq the fork was made at."""
    if conversation.forked_from_id is None:
        return None
    return {"conversation_id": str(conversation.forked_from_id),
            "seq": MESSAGES_PER_TURN * (conversation.forked_from_turn or 0)}


def _require_committed(session: Session, conversation: Conversation, turn: int, field: str, seq: int) -> None:
    """400 past the conversation's end; 409 if the turn is only queued or running (retry later)."""
    if turn <= conversation.turn_count:
        return
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.conversation_id == conversation.conversation_id, Job.status.in_(ACTIVE_STATUSES)))
    if turn <= conversation.turn_count + active:
        raise Conflict("turn_not_committed", f"{field}: message {seq}'s turn is still queued or running; "
                       "retry when its job ends.")
    raise Invalid("invalid_request", f"{field}: {seq} is beyond the conversation's last message "
                   f"({MESSAGES_PER_TURN * conversation.turn_count}).")


def fork_turn(services: Services, session: Session, conversation: Conversation, at_seq: int) -> int:
    """The turn a fork at message `at_seq` ends with: at_seq must end a turn (a reply, or 0)."""
    if at_seq % MESSAGES_PER_TURN:
        raise Invalid("invalid_request", f"at_seq: {at_seq} is a user message; a fork holds whole turns, "
                       "so fork at a reply's seq (even), or at 0 for none.")
    turn = at_seq // MESSAGES_PER_TURN
    _require_committed(session, conversation, turn, "at_seq", at_seq)
    if _calls_tools(services, session, conversation, turn):
        raise Invalid("invalid_request", f"at_seq: reply {at_seq} calls tools that message {at_seq + 1} "
                       "answers; a fork cannot end between a call and its result. Fork at another reply.")
    return turn


def _calls_tools(services: Services, session: Session, conversation: Conversation, turn: int) -> bool:
    """Whether turn `turn`'s reply calls tools: the Messages API wants their results next,
    so neither a fork nor an edited message may follow it."""
    if turn == 0:
        return False
    entry = _turn_entry(services, session, conversation, turn)
    reply = [m.content for m in entry.messages if m.role == "assistant"] if entry else []
    return any(isinstance(content, list) and any(isinstance(block, dict) and block.get("type") == "tool_use"
                                                 for block in content) for content in reply)


def fork(services: Services, session: Session, user: User, parent: Conversation, through: int,
         name: str | None) -> Conversation:
    """A new conversation of `user`'s holding turns 1..`through` of `parent`; not committed."""
    older = session.execute(history.turn_rows(parent.conversation_id)
                            .where(Turn.seq <= through, Turn.entry.is_(None))).all()
    if older:
        # Turns written before rows kept their entries: read once from the log and kept on
        # the parent's rows, as a history read would, so the fork copies them too.
        history.entries_of(services, older, history.READ_AHEAD)
        session.commit()  # a fresh snapshot for the copy
    child = create_conversation(session, user, name if name is not None else parent.conversation_name,
                                parent.system, parent.model, parent.thinking)
    child.tools, child.tool_choice = parent.tools, parent.tool_choice
    child.forked_from_id, child.forked_from_turn = parent.conversation_id, through
    child.turn_count, child.message_count = through, MESSAGES_PER_TURN * through
    child.log_copy_pending = through > 0
    if parent.summary and parent.summary_seq <= through:
        child.summary, child.summary_seq = parent.summary, parent.summary_seq
    session.flush()
    copied = session.execute(_COPY_TURNS, {"fork": child.conversation_id, "prefix": child.s3_file_location,
                                           "parent": parent.conversation_id, "through": through}).rowcount
    if copied != through:  # the parent was deleted meanwhile
        session.rollback()
        raise NotFound("not_found", "No such conversation.")
    return child


def _turn_entry(services: Services, session: Session, conversation: Conversation, turn: int) -> LogEntry | None:
    """A committed turn's log entry; None if it is lost (the history shows nothing for it either)."""
    row = session.execute(history.turn_rows(conversation.conversation_id).where(Turn.seq == turn)).one()
    raw = stored_entry(services.store, row)
    return LogEntry.from_dict(raw) if raw is not None else None


def resubmit(services: Services, session: Session, user: User, parent: Conversation, seq: int,
             content: object | None, name: str | None, idempotency_key: str | None,
             callback_url: str | None, attachments: list[str] | None = None) -> tuple[Conversation, Job, bool]:
    """Edit (`content` given: `seq` must be a user message) or regenerate (`content` None:
    either message of the turn): a fork just before that turn, and the message submitted to
    it. Returns (fork, job, whether the job must be dispatched now); commits."""
    if content is not None and seq % MESSAGES_PER_TURN != 1:
        raise Invalid("invalid_request", f"seq: {seq} is a reply; edit a user message (an odd seq), "
                       "or regenerate the reply.")
    turn = history.turn_of(seq)
    _require_committed(session, parent, turn, "seq", seq)
    if _calls_tools(services, session, parent, turn - 1):
        user_seq = MESSAGES_PER_TURN * turn - 1
        raise Invalid("invalid_request", f"seq: message {user_seq} holds the results of the tools reply "
                       f"{user_seq - 1} called, not a message of the user's; edit or regenerate the turn that "
                       f"called them ({user_seq - 2} or {user_seq - 1}).")
    if content is None:
        entry = _turn_entry(services, session, parent, turn)
        if entry is None:
            raise Conflict("message_unavailable", f"message {MESSAGES_PER_TURN * turn - 1}'s log entry is "
                           "missing; it cannot be sent again.")
        content = next(m.content for m in entry.messages if m.role == "user")
    if idempotency_key:
        replay = _replay(session, user, parent, turn - 1, content, attachments, idempotency_key)
        if replay is not None:
            return (*replay, False)
    child = fork(services, session, user, parent, turn - 1, name)
    # Submitting commits the fork with the job, or rolls both back (quota, cap, size).
    job, send_now = submit_message(services, session, user, child.conversation_id, content, idempotency_key,
                                   "enqueue", callback_url, attachments)
    return child, job, send_now


def _replay(session: Session, user: User, parent: Conversation, through: int, content: object,
            attachments: list[str] | None, idempotency_key: str) -> tuple[Conversation, Job] | None:
    """The fork and job an earlier request with this Idempotency-Key made, if it was this request."""
    job = session.scalar(select(Job).where(Job.user_id == user.id, Job.idempotency_key == idempotency_key))
    if job is None:
        return None
    child = session.get(Conversation, job.conversation_id)
    text, files = split_content(content, attachments)  # as submit_message records them
    if (child is None or child.forked_from_id != parent.conversation_id or child.forked_from_turn != through
            or job.request.get("content") != text or (job.request.get("attachments") or []) != files):
        raise Conflict("idempotency_key_reused", "Idempotency-Key was already used for a different request.")
    return child, job


def list_forks(session: Session, user: User, parent: Conversation, limit: int,
               cursor: str | None) -> tuple[list[Conversation], str | None]:
    """The conversations forked from `parent`, newest first; forks of forks are listed under theirs."""
    query = select(Conversation).where(Conversation.forked_from_id == parent.conversation_id,
                                       Conversation.user_id == user.id)
    return newest_first(session, query, Conversation.created_at, Conversation.conversation_id, limit, cursor)
