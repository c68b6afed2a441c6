"""1. Overhead: sequential turns with a 0 ms model, through HTTP + queue and in-process.

Turns alternate between the two paths (which goes first alternates too), ten per
conversation, so drift and noise fall on both alike. The in-process path is the
API's submit and the worker's `run_turn`, called in this process against the
same PostgreSQL, Redis and folder; the HTTP path is submit, then long-poll.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx2

from bench import timeline
from bench.client import Api, TurnFailed
from bench.cpu import CpuWindow, per_turn
from bench.inprocess import InProcessTurns
from bench.profile import Profiler
from bench.report import Result, brief, noise, percentile, spread
from bench.stack import BenchStack

MESSAGE = "What is the capital of Portugal? Answer in one word."
TURNS_PER_CONVERSATION = 10


@dataclass
class Sample:
    http: list[float] = field(default_factory=list)
    in_process: list[float] = field(default_factory=list)
    phases: list[list[float]] = field(default_factory=list)  # of each HTTP turn
    steps: list[dict] = field(default_factory=list)  # wall seconds by step, of each in-process turn
    cpu_steps: list[dict] = field(default_factory=list)  # CPU seconds by step, of each in-process turn
    cpu: dict = field(default_factory=dict)  # CPU seconds by process role over the measured turns
    failures: list[str] = field(default_factory=list)  # HTTP turns that did not succeed
    profiles: dict = field(default_factory=dict)


def measure(stack: BenchStack, turns: int, warmup: int = 10, in_process: bool = True,
            profile: bool = False) -> Sample:
    api, local = Api(stack.api_url, stack.key), InProcessTurns(stack.services, stack.user)
    window, sample = CpuWindow(stack.roles), Sample()
    profiler = Profiler(stack.base / "profiles") if profile else None
    try:
        for i in range(warmup + turns):
            if i % TURNS_PER_CONVERSATION == 0:
                remote, here = api.new_conversation(), local.new_conversation()
            if i == warmup:
                window.start()
                if profiler:
                    profiler.start_stack(stack, "overhead")
            for which in ((("http", "local") if i % 2 else ("local", "http")) if in_process else ("http",)):
                if which == "http":
                    sent = time.time()
                    try:
                        job, seconds = api.turn(remote, MESSAGE)
                    except (TurnFailed, httpx2.HTTPError) as error:
                        sample.failures.append(f"{type(error).__name__}: {error}"[:300])
                        continue
                    if i >= warmup:
                        sample.http.append(seconds)
                        sample.phases.append(timeline.phases(job, sent, time.time()))
                else:
                    seconds, walls, cpus = local.turn(here, MESSAGE)
                    if i >= warmup:
                        sample.in_process.append(seconds)
                        sample.steps.append(walls)
                        sample.cpu_steps.append(cpus)
        sample.cpu = window.stop()
    finally:
        api.close()
        if profiler:
            sample.profiles = profiler.results()
    return sample


def run(stack: BenchStack, quick: bool) -> Result:
    stack.use_workers(1, stack.settings.worker_concurrency)
    stack.model_control(delay_ms=0)
    turns = 40 if quick else 500
    sample = measure(stack, turns, profile=stack.profile)
    http, inproc = sample.http, sample.in_process
    used = per_turn(sample.cpu, turns)
    result = Result(1, "overhead", config={"turns": turns, "model_delay_ms": 0, "worker": "1 process, "
                                           f"{stack.settings.worker_pool} pool x{stack.settings.worker_concurrency}"})
    result.check("p50 overhead", (percentile(http, 50) - percentile(inproc, 50)) * 1000, "<=", 10, " ms")
    result.check("p99 overhead", (percentile(http, 99) - percentile(inproc, 99)) * 1000, "<=", 50, " ms")
    result.check("failed HTTP turns", len(sample.failures), "<=", 0)
    if sample.failures:
        result.show("first failure", sample.failures[0])
    result.show("HTTP+queue turn", brief(http))
    result.show("in-process turn", brief(inproc))
    result.show("HTTP turn phases p50", timeline.describe(timeline.medians(sample.phases)))
    result.show("in-process steps p50", timeline.describe(timeline.stage_medians(sample.steps)))
    result.show("in-process CPU by step p50", timeline.describe(timeline.stage_medians(sample.cpu_steps)))
    result.show("CPU per HTTP turn", f"API {used['api']:g}, worker {used['worker']:g} ms (their own processes); "
                f"PostgreSQL {used['postgres']:g}, Redis {used['redis']:g} ms (shared with the in-process turns)")
    result.show("noise (MAD/median)", f"HTTP {noise(http)}, in-process {noise(inproc)}; other processes on the "
                f"machine used {used['other (not this bench)'] * turns / 1000:.1f} CPU s meanwhile")
    result.figures.update(http=spread(http), in_process=spread(inproc),
                          http_phases_p50_ms=timeline.medians(sample.phases),
                          in_process_steps_p50_ms=timeline.stage_medians(sample.steps),
                          in_process_cpu_p50_ms=timeline.stage_medians(sample.cpu_steps), cpu_ms_per_turn=used,
                          noise={"http": noise(http), "in_process": noise(inproc)})
    if sample.profiles:
        result.figures["profiles"] = sample.profiles
    return result
