"""A bounded soak: chat load with random faults for N minutes, then the consistency check.

    python -m bench.soak --minutes 5 [--workers 3] [--clients 6] [--seed 1]

A quarter of the conversations offer a client tool: their messages ask Claude to call it,
and the client answers each call (as a tool-running caller does) and follows the
continuation; calls left unanswered when a fault cut the client off are answered before
the end, so every tool round must close.

Runs the fault stack (devstack/faultstack.py, the fault tests' own: embedded PostgreSQL and Valkey,
moto S3 behind a switchable proxy, the offline model, Celery worker processes, the
API in this process). Clients submit messages to a few conversations and now and
then cancel one, while every few seconds one fault strikes: a worker SIGKILLed or
SIGTERMed (and replaced), Redis killed and restarted empty, object storage cut off,
PostgreSQL restarted, the model slowed down. Then the load stops, every service
comes back, every job must end, and `worker.check` must find nothing; each
conversation's turns must also be its succeeded jobs in submit order.
Exit status 0 only if all of that holds. Not part of `make test`.
"""
from __future__ import annotations

import argparse
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from devstack.faultstack import FaultStack, wait_until
from shared.local_stack import config_errors
from shared.models import FINAL_STATUSES, Job, Turn
from worker.check import check
from worker.retry import LONGEST_RETRY_SECONDS

CLOCK = {"name": "clock", "description": "The current time.", "input_schema": {"type": "object"}}


class Load:
    """Client threads: submit to a random conversation, sometimes cancel what they sent."""

    def __init__(self, stack: FaultStack, clients: int, conversations: int, rng: random.Random):
        self.stack, self.rng = stack, rng
        self.user = stack.new_user()
        client = stack.app.test_client()
        self.conversations = [client.post("/v1/conversations", json={}, headers=self.user).get_json()["id"]
                              for _ in range(conversations)]
        self.tool_conversations = [client.post("/v1/conversations", json={"tools": [CLOCK]}, headers=self.user)
                                   .get_json()["id"] for _ in range(max(1, conversations // 4))]
        self.accepted: list[str] = []
        self.statuses: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, n: int) -> None:
        client, rng, sent = self.stack.app.test_client(), random.Random(self.rng.random()), 0
        while not self._stop.is_set():
            conversation_id = rng.choice(self.conversations + self.tool_conversations)
            calls = conversation_id in self.tool_conversations
            response = client.post(f"/v1/conversations/{conversation_id}/messages",
                                   json={"content": f"client {n} message {sent}" + (" call tool clock {}" if calls
                                                                                    else "")}, headers=self.user)
            self.statuses[f"submit {response.status_code}"] += 1
            sent += 1
            if response.status_code == 202:
                job_id = response.get_json()["job"]["id"]
                self.accepted.append(job_id)
                if rng.random() < 0.05:
                    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=self.user)
                    self.statuses[f"cancel {cancelled.status_code}"] += 1
                if calls:
                    self.answer(client, job_id)
            self._stop.wait(rng.uniform(0.05, 0.4))


    def answer(self, client, job_id: str) -> None:
        """Wait for the job; while it calls the tool, answer and follow the continuation."""
        while True:
            response = client.get(f"/v1/jobs/{job_id}?wait=30", headers=self.user)
            job = response.get_json() if response.status_code == 200 else {}
            if job.get("status") != "requires_action" or job["required_action"]["continued_by"]:
                return  # answered, or a fault cut this client off: the end of the run answers it
            results = [{"tool_call_id": call["id"], "content": "noon"} for call in job["required_action"]["tool_calls"]]
            answered = client.post(f"/v1/jobs/{job_id}/tool_results", json={"results": results},
                                   headers={**self.user, "Idempotency-Key": f"answer-{job_id}"})
            self.statuses[f"tool_results {answered.status_code}"] += 1
            if answered.status_code != 202:
                return
            job_id = answered.get_json()["job"]["id"]
            self.accepted.append(job_id)


def inject(stack: FaultStack, rng: random.Random, say, problems: list[str]) -> None:
    """One random fault, held for a few seconds where it is an outage."""
    fault = rng.choice(["kill worker", "stop worker", "kill redis", "stop storage", "restart postgres",
                        "slow model"])
    outage = rng.uniform(1, 6)
    say(f"fault: {fault}" + ("" if "worker" in fault else f" for {outage:.1f}s"))
    if fault in ("kill worker", "stop worker"):
        victim = rng.choice(stack.use_workers(1))
        if fault == "kill worker":
            victim.kill()
        else:
            try:
                victim.terminate()
            except subprocess.TimeoutExpired:  # killed by terminate() meanwhile
                say(f"worker {victim.name} did not stop within 60 s of SIGTERM")
                problems.append(f"slow_shutdown worker {victim.name}")
        stack.workers.remove(victim)
        stack.start_workers(1)
    elif fault == "kill redis":
        stack.valkey.kill()
        time.sleep(outage)
        stack.valkey.start()
    elif fault == "stop storage":
        stack.s3.stop()
        time.sleep(outage)
        stack.s3.start()
    elif fault == "restart postgres":
        stack.postgres.stop()
        time.sleep(outage)
        stack.postgres.start()
    else:
        stack.model_control(stream_delay_ms=int(outage * 1000))
        time.sleep(outage)
        stack.model_control(stream_delay_ms=0)


def out_of_order(stack: FaultStack, conversations: list[str]) -> list[str]:
    """Conversations whose turns are not their succeeded jobs in submit order."""
    wrong = []
    with stack.services.sessions() as session:
        for conversation_id in conversations:
            key = uuid.UUID(conversation_id)
            turns = session.scalars(select(Turn.job_id).where(Turn.conversation_id == key).order_by(Turn.seq)).all()
            succeeded = session.scalars(select(Job.id).where(Job.conversation_id == key, Job.status.in_(
                ("succeeded", "requires_action"))).order_by(Job.position)).all()  # a tool call is a turn too
            if turns != succeeded:
                wrong.append(conversation_id)
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long the load and the faults run")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None, help="repeat a run's sequence of faults")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (worker logs)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    logging.getLogger("parley").setLevel(logging.ERROR)  # the API's warnings while services are down
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)

    base = args.keep or Path(tempfile.mkdtemp(prefix="parley-soak-"))
    stack = FaultStack(base)
    stack.model.httpd.handle_error = lambda *_: None  # model calls cut off by a killed worker
    try:
        say(f"seed {seed}: {args.workers} workers, {args.clients} clients, {args.conversations} conversations")
        problems = soak(stack, args, random.Random(seed), say)
    finally:
        stack.close()
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    for problem in problems:
        print(problem)
    say("PASS" if not problems else f"FAIL: {len(problems)} problems")
    return 1 if problems else 0


def soak(stack: FaultStack, args: argparse.Namespace, rng: random.Random, say) -> list[str]:
    """Load and faults for the given minutes, then everything must settle cleanly."""
    problems: list[str] = []
    stack.start_workers(args.workers)
    load = Load(stack, args.clients, args.conversations, rng)
    load.start()
    deadline = time.monotonic() + args.minutes * 60
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(2, 8))
        inject(stack, rng, say, problems)
    load.stop()
    stack.restore()
    stack.use_workers(args.workers)
    say(f"load stopped: {dict(load.statuses)}; waiting for every job to end")
    try:
        ended = wait_until(lambda: _all_final(stack, load), 120 + LONGEST_RETRY_SECONDS, interval=1,
                           what="every job to end")
    except AssertionError as error:
        return [*problems, str(error), *check(stack.services, grace=0).lines()]
    say(f"jobs: {dict(Counter(job.status for job in ended))}")
    # The offline model never fails and no message is too long: every failure is a fault's doing.
    problems += [f"failed job {job.id}: {job.error}" for job in ended if job.status == "failed"]
    report = check(stack.services)
    for line in report.lines():
        print(line)
    problems += [finding.line() for finding in report.findings]
    problems += [f"out_of_order conversation {c}"
                 for c in out_of_order(stack, load.conversations + load.tool_conversations)]
    problems += [f"lost job {j}" for j in sorted(set(load.accepted) - {str(job.id) for job in ended})]
    return problems


def _all_final(stack: FaultStack, load: Load) -> list[Job] | None:
    """Every job final and every tool call answered (those a fault cut a client off from are
    answered here, as the client would on reconnecting)."""
    with stack.services.sessions() as session:
        jobs = session.scalars(select(Job)).all()
    waiting = [job for job in jobs if job.status == "requires_action" and job.continued_by is None]
    client = stack.app.test_client()
    for job in waiting:
        load.answer(client, str(job.id))
    return jobs if not waiting and all(job.status in FINAL_STATUSES for job in jobs) else None


if __name__ == "__main__":
    with config_errors():  # a bad setting: one line, exit status 2
        sys.exit(main())
