"""A fixed piece of pure-Python work, timed between scenarios: how fast this machine was
at the time. The same shared 2-core machine ran the same tree's turns ~30 % slower an hour
apart (its neighbours, not the code), so a figure is read beside the reference taken in
the same run, and two runs are compared by their references first.

The work is timed once the machine is quiet (the stack done with the last scenario's
turns): with the other core busy, the same work took up to three times the CPU time
here, which is also why a turn costs more CPU at saturation than alone."""
from __future__ import annotations

import json
import time

import psutil

ROUNDS = 5  # the fastest of five, each ~25 ms on a quiet development machine
QUIET_PERCENT = 15  # the machine's CPU use below which it counts as quiet
SETTLE_SECONDS = 5.0  # the longest wait for it


def _work() -> int:
    """JSON, dicts, strings and calls, as a turn's Python does."""
    messages = [{"role": "user" if n % 2 else "assistant", "content": "word " * (n % 40), "seq": n}
                for n in range(2000)]
    total = 0
    for _ in range(8):
        decoded = json.loads(json.dumps(messages))
        total += sum(len(m["content"]) for m in decoded if m["role"] == "user")
        total += len(sorted(decoded, key=lambda m: (m["seq"] % 7, m["role"])))
    return total


def reference_ms() -> float:
    """CPU milliseconds of the fixed work in this thread, once the machine is quiet (or
    after SETTLE_SECONDS): the fastest of ROUNDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while psutil.cpu_percent(interval=0.25) > QUIET_PERCENT and time.monotonic() < deadline:
        pass
    spent = []
    for _ in range(ROUNDS):
        started = time.thread_time()
        _work()
        spent.append((time.thread_time() - started) * 1000)
    return round(min(spent), 1)
