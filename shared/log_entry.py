"""One turn of the conversation log, as stored in object storage: the record's one type.

The pipeline writes it (`to_dict`); the window rebuild, the summary, the history reads
and the checker read it (`from_dict`). Version 1 entries (before `version`, `outcome` and
`stop_reason` were written) still load: their turns were complete.

Messages are plain text today; content blocks (attachments, thinking, tool calls) will
extend `LoggedMessage` under a new version, read alongside the old ones.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from shared.replies import sendable

VERSION = 2


@dataclass(frozen=True)
class LoggedMessage:
    role: str  # user or assistant
    content: str | list[dict]  # text, or content blocks: file references (shared/files.py), thinking
    tokens: int  # as the model counted it (see shared/memory.py)
    created_at: str  # ISO 8601
    model: str | None = None  # the model that wrote an assistant message


@dataclass(frozen=True)
class LogEntry:
    seq: int
    job_id: str
    messages: tuple[LoggedMessage, ...]
    usage: dict = field(default_factory=dict)
    outcome: str = "complete"  # shared/replies.py
    stop_reason: str | None = None
    # What the model counted beyond the messages, so a rebuilt window measures as the cached one did.
    prompt_overhead: int | None = None
    overhead_key: str | None = None

    @property
    def sendable(self) -> bool:
        """Whether its messages go back to the model on later turns (a refused turn's do not)."""
        return sendable(self.outcome)

    def to_dict(self) -> dict:
        return {"version": VERSION, "seq": self.seq, "job_id": self.job_id, "outcome": self.outcome,
                "stop_reason": self.stop_reason,
                "messages": [{k: v for k, v in asdict(m).items() if v is not None or k != "model"}
                             for m in self.messages],
                "usage": self.usage,
                "prompt_overhead": {"tokens": self.prompt_overhead, "key": self.overhead_key}}

    @classmethod
    def from_dict(cls, data: dict) -> "LogEntry":
        """Any version written so far; a KeyError or TypeError if `data` is not a log entry."""
        overhead = data.get("prompt_overhead") or {}
        return cls(seq=data["seq"], job_id=data["job_id"],
                   messages=tuple(LoggedMessage(m["role"], m["content"], m["tokens"], m["created_at"], m.get("model"))
                                  for m in data["messages"]),
                   usage=data.get("usage") or {}, outcome=data.get("outcome") or "complete",
                   stop_reason=data.get("stop_reason"), prompt_overhead=overhead.get("tokens"),
                   overhead_key=overhead.get("key"))


def stored_entry(store, row) -> dict | None:
    """A turn row's log entry: the copy kept on the row (one query for many turns), else
    the log object (turns written before the copy was kept); None if the object is gone."""
    return row.entry if row.entry is not None else store.get(row.log_key)
