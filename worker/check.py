"""Consistency check of PostgreSQL against the conversation log: `python -m worker.check`.

One line per finding, then a summary; exit status 1 if there is any finding.

  stuck_job     a job that is not final and should be: running with a lease that ran
                out more than GRACE ago, or first in its conversation and still queued
                GRACE after the sweeper should have re-sent it (QUEUED_GRACE_SECONDS
                after it could run, plus the longest retry delay if it was handed back)
  missing_turn  a succeeded job (or one that called tools: requires_action) without its turn
  stray_turn    a turn whose job did not succeed or call tools (or no longer exists)
  counters      a conversation whose turn_count disagrees with its turns (count, last seq)
  missing_log   a turn whose log entry is not in the store
  wrong_log     a log entry of another job or seq than its turn, or whose reply is not the job's
  wrong_copy    a turn row whose copy of its log entry (read by history pages) differs from the log
  orphan_log    a log entry with no turn, or under a conversation that no longer exists

Not findings, listed as `pending`: log entries at seq = turn_count + 1. The pipeline
writes a turn's log entry before it commits the turn, so that slot is filled while a
turn is in flight, and stays filled when the attempt ends without committing (the job
was cancelled, its claim was lost, or its worker died); the conversation's next turn
overwrites it, and nothing reads the log except through committed turns. Nor are a
new fork's copied turns whose log objects are still being written (log_copy_pending):
their rows' entries serve reads until worker/forks.py has written them.

A fork's copied turns keep the job that wrote them in the conversation it came from;
once that conversation is deleted the job is gone, which is not a stray turn.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field

from sqlalchemy import text

from shared.bootstrap import Services
from shared.jobs.sql import STUCK, SUCCEEDED_WITHOUT_TURN
from shared.log_entry import LogEntry
from shared.model.blocks import content_text
from worker.retry import LONGEST_RETRY_SECONDS

_LOG_KEY = re.compile(r"^(?P<prefix>.+/)turns/(?P<seq>\d+)\.json$")

_CONVERSATIONS = text("""
    SELECT c.conversation_id, c.turn_count, c.s3_file_location, c.log_copy_pending,
           count(t.id) AS turns, coalesce(max(t.seq), 0) AS last_seq
      FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.conversation_id
     GROUP BY c.conversation_id
""")

_TURNS = text("""
    SELECT t.conversation_id, t.seq, t.job_id, t.log_key, t.entry, j.status, j.reply,
           t.seq <= coalesce(c.forked_from_turn, 0) AS copied, c.log_copy_pending
      FROM turns t JOIN conversations c ON c.conversation_id = t.conversation_id
      LEFT JOIN jobs j ON j.id = t.job_id
     ORDER BY t.conversation_id, t.seq
""")


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    detail: str

    def line(self) -> str:
        return f"{self.kind} {self.subject}: {self.detail}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    pending: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, subject: object, detail: str) -> None:
        self.findings.append(Finding(kind, str(subject), detail))

    def lines(self) -> list[str]:
        return [f.line() for f in self.findings] + [f.line() for f in self.pending] + [self.summary()]

    def summary(self) -> str:
        checked = ", ".join(f"{n} {what}" for what, n in self.counts.items())
        return f"checked {checked}: {len(self.findings)} findings, {len(self.pending)} pending"


def check(services: Services, grace: float | None = None, read_entries: bool = True) -> Report:
    """Compare jobs, turns and conversations in PostgreSQL with the log store.

    `grace`: how long past its lease (or its grace to be sent) a job may still be
    in flight before it counts as stuck; by default three sweeper periods.
    `read_entries`: also read every turn's entry (one GET per turn) to compare its
    job, seq and reply; without it only the listing is compared.
    """
    settings = services.settings
    grace = 3 * settings.sweep_interval_seconds if grace is None else grace
    report = Report()
    with services.engine.connect() as db:
        for row in db.execute(STUCK, {"grace": grace, "queued_grace": settings.queued_grace_seconds,
                                       "retry_wait": LONGEST_RETRY_SECONDS}):
            report.add("stuck_job", row.id, f"{row.status} (attempt {row.attempts}), "
                       f"{'lease ran out' if row.status == 'running' else 'ready to run'} "
                       f"{max(0, int(row.overdue))}s ago")
        for job_id in db.execute(SUCCEEDED_WITHOUT_TURN).scalars():
            report.add("missing_turn", f"job {job_id}", "succeeded, but has no turn")
        conversations = {row.s3_file_location: row for row in db.execute(_CONVERSATIONS)}
        turns = db.execute(_TURNS).all()
        report.counts["jobs"] = db.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    report.counts["conversations"], report.counts["turns"] = len(conversations), len(turns)

    for row in conversations.values():
        if not row.turn_count == row.turns == row.last_seq:
            report.add("counters", f"conversation {row.conversation_id}",
                       f"turn_count {row.turn_count}, but {row.turns} turns, the last seq {row.last_seq}")

    listed = _list_log(services)
    report.counts["log entries"] = len(listed)
    committed = set()
    for turn in turns:
        committed.add(turn.log_key)
        subject = f"conversation {turn.conversation_id} turn {turn.seq}"
        if turn.status not in ("succeeded", "requires_action") and not (turn.copied and turn.status is None):
            report.add("stray_turn", subject, f"its job {turn.job_id} is {turn.status or 'gone'}")
        if turn.log_key not in listed and turn.copied and turn.log_copy_pending:
            report.pending.append(Finding("pending", subject, "a fork's copied turn: its log entry is "
                                          "still being written"))
        elif turn.log_key not in listed:
            report.add("missing_log", subject, f"no log entry {turn.log_key}")
        elif read_entries:
            _compare_entry(services, report, subject, turn)

    for key, (prefix, seq) in listed.items():
        if key in committed:
            continue
        owner = conversations.get(prefix)
        if owner is None:
            report.add("orphan_log", key, "its conversation does not exist")
        elif seq == owner.turn_count + 1:
            report.pending.append(Finding("pending", key, "the next turn's slot: in flight, or left by "
                                          "an attempt that did not commit; the next turn overwrites it"))
        else:
            report.add("orphan_log", key, f"no turn {seq} (the conversation has {owner.turn_count})")
    return report


def _list_log(services: Services) -> dict[str, tuple[str, int]]:
    """Every turn entry in the store: key -> (conversation prefix, seq)."""
    entries = {}
    for key in services.store.list_keys("users/"):
        match = _LOG_KEY.match(key)
        if match:
            entries[key] = (match["prefix"], int(match["seq"]))
    return entries


def _compare_entry(services: Services, report: Report, subject: str, turn) -> None:
    raw = services.store.get(turn.log_key)
    if raw is None:
        report.add("missing_log", subject, f"no log entry {turn.log_key}")
        return
    try:
        entry = LogEntry.from_dict(raw)
    except (KeyError, TypeError, AttributeError):
        report.add("wrong_log", subject, f"{turn.log_key} is not a log entry")
        return
    if entry.job_id != str(turn.job_id) or entry.seq != turn.seq:
        report.add("wrong_log", subject, f"{turn.log_key} holds job {entry.job_id} seq {entry.seq}, "
                   f"not job {turn.job_id} seq {turn.seq}")
        return
    replies = [content_text(m.content) for m in entry.messages if m.role == "assistant"]  # the job keeps the text
    if turn.reply and replies != [turn.reply.get("content")]:
        report.add("wrong_log", subject, f"{turn.log_key}: the reply differs from job {turn.job_id}'s")
        return
    if turn.entry is not None and turn.entry != raw:
        report.add("wrong_copy", subject, f"the turn row's copy of its entry differs from {turn.log_key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--grace", type=float, default=None,
                        help="seconds a job may be overdue before it counts as stuck (default: 3 sweeper periods)")
    parser.add_argument("--list-only", action="store_true",
                        help="compare the log's listing only; do not read each entry")
    args = parser.parse_args(argv)

    from shared.bootstrap import bootstrap
    from shared.local_stack import tool_settings

    # The environment's services, else those of a `make run` running beside this.
    services = bootstrap(tool_settings("database_url", "redis_url"))
    try:
        report = check(services, grace=args.grace, read_entries=not args.list_only)
    finally:
        services.close()
    for line in report.lines():
        print(line)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
