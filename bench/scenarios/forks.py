"""10. Forks: forking a conversation of 5,000 turns, beside one of 50.

Conversations are seeded straight into PostgreSQL and the log store (bench/seed.py
history(): rows with their entries' copies + one object per turn, as the pipeline writes
them). Each fork is a real POST /v1/conversations/{id}/fork through the API at the
conversation's last reply, timed to its 201 (the rows copied, the fork readable), then
until a worker has written the fork's log objects (log_copy_pending cleared; polled), and
the first page of the fork is read back. The request should cost about the same at 5,000
turns as at 50: the rows are copied by one statement, the objects afterwards.
"""
from __future__ import annotations

import time
import uuid

import httpx2

from bench import seed
from bench.report import Result, percentile
from bench.stack import BenchStack
from shared.models import Conversation

MESSAGE_CHARS = 300
SIZES = (50, 5000)


def run(stack: BenchStack, quick: bool) -> Result:
    stack.use_workers(1, stack.settings.worker_concurrency)
    repeat = 3 if quick else 10
    began = time.monotonic()
    seeded = {turns: seed.history(stack.services, stack.user, 2 * turns, MESSAGE_CHARS) for turns in SIZES}
    seconds_to_seed = time.monotonic() - began
    figures = {}
    with httpx2.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.key}"}, timeout=120) as http:
        for turns, conversation_id in seeded.items():
            figures[turns] = _forks(stack, http, conversation_id, turns, repeat)
    result = Result(10, "forks", config={"turns": list(SIZES), "message_chars": MESSAGE_CHARS, "forks": repeat,
                                         "storage": stack.settings.storage_url})
    small, large = (figures[n] for n in SIZES)
    # The rows are still copied one by one inside PostgreSQL, so the request grows a little with
    # the turns; what must not happen is a storage request per turn before the 201.
    result.check(f"fork p50, {SIZES[1]} turns", large["request_p50_ms"], "<=", 250, " ms")
    result.check(f"fork p50 ratio {SIZES[1]}/{SIZES[0]} turns", large["request_p50_ms"] / small["request_p50_ms"],
                 "<=", 10)
    for turns, found in figures.items():
        result.show(f"{turns} turns", f"request p50 {found['request_p50_ms']:g} / max {found['request_max_ms']:g} ms; "
                                      f"log objects written after {found['log_copied_p50_s']:g} s (p50)")
    result.show("seeding", f"{seconds_to_seed:.0f} s for {sum(SIZES)} turns")
    result.figures.update(by_size=figures, seconds_to_seed=round(seconds_to_seed, 1))
    return result


def _forks(stack: BenchStack, http: httpx2.Client, conversation_id: str, turns: int, repeat: int) -> dict:
    requests, copies = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        response = http.post(f"/v1/conversations/{conversation_id}/fork", json={"at_seq": 2 * turns})
        requests.append(time.perf_counter() - started)
        response.raise_for_status()
        fork_id = response.json()["id"]
        _wait_copied(stack, fork_id)
        copies.append(time.perf_counter() - started)
        page = http.get(f"/v1/conversations/{fork_id}/messages", params={"limit": 2}).json()["data"]
        assert [m["seq"] for m in page] == [2 * turns, 2 * turns - 1], page
    return {"request_p50_ms": round(percentile(requests, 50) * 1000, 1),
            "request_max_ms": round(max(requests) * 1000, 1),
            "log_copied_p50_s": round(percentile(copies, 50), 2)}


def _wait_copied(stack: BenchStack, fork_id: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with stack.services.sessions() as session:
            if not session.get(Conversation, uuid.UUID(fork_id)).log_copy_pending:
                return
        time.sleep(0.02)
    raise RuntimeError(f"fork {fork_id}: log not copied within {timeout:.0f} s")
