"""1. Overhead: sequential turns with a 0 ms model, through HTTP + queue and in-process."""
from __future__ import annotations

import time

from bench.client import Api
from bench.inprocess import InProcessTurns
from bench.report import Result, brief, noise, percentile, spread
from bench.stack import BenchStack
from bench import timeline

MESSAGE = "What is the capital of Portugal? Answer in one word."
TURNS_PER_CONVERSATION = 10


def measure(stack: BenchStack, turns: int, warmup: int = 10, in_process: bool = True):
    """Alternating HTTP and in-process turns; returns both latencies, HTTP phases and in-process steps."""
    api, local = Api(stack.api_url, stack.key), InProcessTurns(stack.services, stack.user)
    http, inproc, phases, steps = [], [], [], []
    try:
        for i in range(warmup + turns):
            if i % TURNS_PER_CONVERSATION == 0:
                remote, here = api.new_conversation(), local.new_conversation()
            order = ((0, 1) if i % 2 else (1, 0)) if in_process else (0,)
            for which in order:
                if which == 0:
                    sent = time.time()
                    job, seconds = api.turn(remote, MESSAGE)
                    if i >= warmup:
                        http.append(seconds)
                        phases.append(timeline.phases(job, sent, time.time()))
                else:
                    seconds, by_step = local.turn(here, MESSAGE)
                    if i >= warmup:
                        inproc.append(seconds)
                        steps.append(by_step)
    finally:
        api.close()
    return http, inproc, phases, steps


def run(stack: BenchStack, quick: bool) -> Result:
    stack.use_workers(1, stack.settings.worker_concurrency)
    stack.model_control(delay_ms=0)
    turns = 40 if quick else 500
    http, inproc, phases, steps = measure(stack, turns)
    result = Result(1, "overhead", config={"turns": turns, "model_delay_ms": 0, "worker": "1 process, "
                                           f"threads pool x{stack.settings.worker_concurrency}"})
    p50 = (percentile(http, 50) - percentile(inproc, 50)) * 1000
    p99 = (percentile(http, 99) - percentile(inproc, 99)) * 1000
    result.check("p50 overhead", p50, "<=", 15, " ms")
    result.check("p99 overhead", p99, "<=", 50, " ms")
    result.show("HTTP+queue turn", brief(http))
    result.show("in-process turn", brief(inproc))
    result.show("HTTP turn phases p50", timeline.describe(timeline.medians(phases)))
    result.show("in-process steps p50", timeline.describe(timeline.stage_medians(steps)))
    result.show("noise (MAD/median)", f"HTTP {noise(http)}, in-process {noise(inproc)}")
    result.figures.update(http=spread(http), in_process=spread(inproc), http_phases_p50_ms=timeline.medians(phases),
                          in_process_steps_p50_ms=timeline.stage_medians(steps),
                          noise={"http": noise(http), "in_process": noise(inproc)})
    return result
