"""2. In-flight capacity: 200 turns of 200 conversations submitted at once to a
1,000 ms model and the turn workers as `make run` starts them (their processes, pool and
concurrency): wall time over 1 s, and each worker process's peak RSS.

Each conversation has its own user, as 200 people chatting would. Two rounds: the
first also pays for opening threads and connections; the second is the check. A
third round sends the same 200 turns as one user (one API key), whose submits
queue on that user's row lock (the in-flight cap); it is shown, not checked.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass

import psutil

from bench import seed, timeline
from bench.client import AsyncApi
from bench.cpu import describe, per_turn
from bench.profile import Measurement
from bench.report import Result, brief, spread
from bench.stack import BenchStack

MODEL_DELAY_MS = 1000
MESSAGE = "Think about it for a second."


class PeakRss:
    """Samples a process's RSS every 20 ms; also reads the kernel's high-water mark (VmHWM)."""

    def __init__(self, pid: int):
        self.process, self.peak = psutil.Process(pid), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def high_water(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Round:
    wall: float
    turns: list[float]
    failed: list[str]
    spans: dict  # when the last job was created, started and finished, seconds after the first submit
    phases: list[list[float]]  # each turn's spans (bench.timeline.PHASES)

    def describe(self) -> str:
        return (f"wall {self.wall:.2f} s; turns {brief(self.turns)}; last job created / started / finished at "
                f"{self.spans['last_created_s']:.2f} / {self.spans['last_started_s']:.2f} / "
                f"{self.spans['last_finished_s']:.2f} s; phases p50 "
                f"{timeline.describe(timeline.medians(self.phases)) if self.phases else '-'}")


async def _turn(api: AsyncApi, conversation: str) -> tuple[dict, float, float]:
    """One turn: the job, its seconds, and when the driver sent it (its clock)."""
    sent = time.time()
    job, seconds = await api.turn(conversation, MESSAGE)
    return job, seconds, sent


async def one_round(clients: list[AsyncApi], conversations: list[str]) -> Round:
    """Every conversation's turn at once, each through its user's client. A turn's
    phases start when the driver sent it, not at the round's start: the driver's own
    delay in sending 200 requests is not the API's."""
    sent = time.time()
    started = time.perf_counter()
    turns = await asyncio.gather(*(_turn(api, c) for api, c in zip(clients, conversations)),
                                 return_exceptions=True)
    wall = time.perf_counter() - started
    done = [turn for turn in turns if not isinstance(turn, BaseException)]
    spans = {f"last_{name}_s": round(max((timeline.at(job[f"{name}_at"]) for job, _, _ in done), default=sent) - sent,
                                     3)
             for name in ("created", "started", "finished")}
    return Round(wall, [seconds for _, seconds, _ in done],
                 [str(turn).strip() for turn in turns if isinstance(turn, BaseException)], spans,
                 [timeline.phases(job, own, own + seconds) for job, seconds, own in done])


async def rounds(stack: BenchStack, conversations: list[str], keys: list[str], own: list[str],
                 on_warm_start, on_warm_stop) -> list[Round]:
    """Two rounds of `conversations` (each through its user's key), then `own` (all the bench user's)."""
    clients = {key: AsyncApi(stack.api_url, key, connections=4) for key in set(keys)}
    one_user = AsyncApi(stack.api_url, stack.key, connections=2 * len(own) + 10)
    try:
        cold = await one_round([clients[key] for key in keys], conversations)
        on_warm_start()
        warm = await one_round([clients[key] for key in keys], conversations)
        on_warm_stop()
        return [cold, warm, await one_round([one_user] * len(own), own)]
    finally:
        for client in (*clients.values(), one_user):
            await client.close()


def run(stack: BenchStack, quick: bool) -> Result:
    turns = 40 if quick else 200
    # The default processes, pool and concurrency, as `make run` starts them (--capacity-workers
    # to compare).
    processes = stack.capacity_workers
    workers = stack.use_workers(processes)
    pool, concurrency = stack.worker_config[2], stack.worker_config[1]
    stack.model_control(delay_ms=MODEL_DELAY_MS)
    users = [stack.new_user(f"capacity-{n}") for n in range(turns)]
    conversations = [seed.conversations(stack.services, user, 1, "capacity")[0] for user, _ in users]
    own = seed.conversations(stack.services, stack.user, turns, "capacity-one-user")
    measured = Measurement(stack, "capacity")
    rss = [PeakRss(worker.process.pid) for worker in workers]
    idle_rss = max(psutil.Process(worker.process.pid).memory_info().rss for worker in workers)
    try:
        cold, warm, one_user = asyncio.run(rounds(stack, conversations, [key for _, key in users], own,
                                                  measured.start, measured.stop))
    finally:
        for each in rss:
            each.stop()
    peaks = [max(each.peak, each.high_water()) for each in rss]  # sampled, or the kernel's high-water mark
    failed = cold.failed + warm.failed + one_user.failed
    result = Result(2, "in-flight capacity", config={"turns": turns, "model_delay_ms": MODEL_DELAY_MS,
                                                     "worker": f"{processes} process(es), {pool} pool x{concurrency}"})
    result.check("wall time", warm.wall, "<=", 3, " s")
    result.check("failed turns", len(failed), "<=", 0)
    result.check("worker peak RSS (largest process)", max(peaks) / 2**20, "<=", 400, " MB")
    result.show("first round (threads, connections opened)", cold.describe())
    result.show("second round", warm.describe())
    result.show(f"one user's {turns} turns (not checked)", one_user.describe())
    cpu = per_turn(measured.cpu, turns)
    busy = sum(value for role, value in cpu.items() if role in stack.roles())  # not idle, not others
    system = per_turn(measured.system, turns, ("api", "worker", "postgres", "redis"))
    result.show("CPU ms per turn, second round", describe(cpu))
    result.show("of it system time (the kernel), ms per turn", describe(system))
    result.show("CPU bound", f"{busy:.1f} ms of CPU per turn x {turns} turns on {os.cpu_count()} cores = "
                f"{busy * turns / 1000 / os.cpu_count():.2f} s, if nothing waited (target wall: 3 s)")
    if failed:
        result.show("first failure", failed[0][:300])
    result.show("worker RSS", f"idle {idle_rss / 2**20:.0f} MB (largest), peak "
                f"{' + '.join(f'{peak / 2**20:.0f}' for peak in peaks)} = {sum(peaks) / 2**20:.0f} MB")
    result.figures.update(
        rounds={name: {"wall_s": round(r.wall, 3), "turns": spread(r.turns), "spans": r.spans,
                       "phases_p50_ms": timeline.medians(r.phases) if r.phases else None, "failed": len(r.failed)}
                for name, r in (("cold", cold), ("warm", warm), ("one_user", one_user))},
        failures=failed[:20], idle_rss_mb=round(idle_rss / 2**20, 1),
        peak_rss_mb=[round(peak / 2**20, 1) for peak in peaks], cpu_ms_per_turn=cpu,
        system_cpu_ms_per_turn=system)
    if measured.profiler:
        result.figures["profiles"] = measured.profiles
    return result
