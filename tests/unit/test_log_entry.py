"""The log entry's one type: what the pipeline writes reads back the same, and entries
written before versions (version 1) still load as complete turns."""
from __future__ import annotations

import json

from shared.log_entry import VERSION, LogEntry, LoggedMessage

V1 = {"seq": 3, "job_id": "5b7c0f8e-0000-4000-8000-000000000001",
      "messages": [{"role": "user", "content": "Hi", "tokens": 5, "created_at": "2026-10-01T10:00:00+00:00"},
                   {"role": "assistant", "content": "Hello!", "tokens": 4, "created_at": "2026-10-01T10:00:01+00:00",
                    "model": "claude-sonnet-4-5"}],
      "usage": {"input_tokens": 20, "output_tokens": 4}, "prompt_overhead": {"tokens": 11, "key": "abc"}}


def test_a_version_1_entry_loads_as_a_complete_turn():
    entry = LogEntry.from_dict(V1)
    assert (entry.seq, entry.outcome, entry.stop_reason, entry.sendable) == (3, "complete", None, True)
    assert [(m.role, m.content, m.tokens) for m in entry.messages] == [("user", "Hi", 5), ("assistant", "Hello!", 4)]
    assert (entry.messages[1].model, entry.prompt_overhead, entry.overhead_key) == ("claude-sonnet-4-5", 11, "abc")


def test_what_is_written_reads_back_the_same_and_says_its_version():
    entry = LogEntry(seq=7, job_id="j", outcome="refused", stop_reason="refusal", usage={"output_tokens": 2},
                     messages=(LoggedMessage("user", "x", 1, "t1"), LoggedMessage("assistant", "Hello..", 2, "t2", "m")))
    stored = json.loads(json.dumps(entry.to_dict()))  # as the log store keeps it
    assert stored["version"] == VERSION and "model" not in stored["messages"][0]
    assert LogEntry.from_dict(stored) == entry and not entry.sendable
