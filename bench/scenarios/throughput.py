"""4. Throughput: turns per second at saturation with a 0 ms model, and where the time goes.

Closed-loop clients, each its own user and conversation (a user's submits take
that user's row lock, so one user's turns cannot show the system's rate), each
submitting and long-polling turn after turn. Over the measured window every
process's CPU time is read: the API, the workers, PostgreSQL, Redis (queue,
cache, events), the offline model and this driver, and whatever else ran on the
machine meanwhile (other people's jobs: noise).
"""
from __future__ import annotations

import asyncio
import time

from bench import seed, timeline
from bench.client import AsyncApi
from bench.cpu import describe, per_turn
from bench.profile import Measurement
from bench.report import Result, brief, spread
from bench.stack import BenchStack
from devstack.processes import DEFAULT_WORKERS

MESSAGE = "Quick question."
WORKER_PROCESSES = DEFAULT_WORKERS  # as `make run` starts them, each with the default pool and concurrency


async def client(api: AsyncApi, conversation: str, until: float, window: tuple[float, float], done: list) -> None:
    while time.perf_counter() < until:
        sent = time.time()
        job, seconds = await api.turn(conversation, MESSAGE)
        finished = time.perf_counter()
        if window[0] <= finished <= window[1]:
            done.append((seconds, timeline.phases(job, sent, time.time())))


async def closed_loop(apis: list[AsyncApi], conversations: list[str], warmup: float, seconds: float,
                      on_start, on_stop) -> list:
    """Each client's turns, one after another, for `warmup` then `seconds`; the turns that
    finished in the measured window, as (seconds, phases). `on_start` and `on_stop` mark it."""
    begin = time.perf_counter() + warmup
    window, done = (begin, begin + seconds), []
    tasks = [asyncio.create_task(client(api, c, window[1], window, done)) for api, c in zip(apis, conversations)]
    await asyncio.sleep(warmup)
    on_start()
    await asyncio.sleep(seconds)
    on_stop()
    await asyncio.gather(*tasks)
    return done


async def load(stack: BenchStack, users: list, warmup: float, seconds: float, on_start, on_stop) -> list:
    apis = [AsyncApi(stack.api_url, key, connections=4) for _, key in users]
    conversations = [seed.conversations(stack.services, user, 1, "load")[0] for user, _ in users]
    try:
        return await closed_loop(apis, conversations, warmup, seconds, on_start, on_stop)
    finally:
        for api in apis:
            await api.close()


def run(stack: BenchStack, quick: bool) -> Result:
    stack.use_workers(WORKER_PROCESSES)
    _, concurrency, pool = stack.worker_config
    stack.model_control(delay_ms=0)
    clients, warmup, seconds = (16, 2, 5) if quick else (48, 3, 20)
    users = [stack.new_user(f"load-{n}") for n in range(clients)]
    measured = Measurement(stack, "throughput")
    done = asyncio.run(load(stack, users, warmup, seconds, measured.start, measured.stop))
    rate = len(done) / seconds
    cpu = per_turn(measured.cpu, len(done))
    pipeline = sum(cpu[role] for role in ("api", "worker", "postgres", "redis"))
    # Everything `make run` starts except the databases, the model and its supervisor, which
    # relays no lines (each process writes its own: devstack/supervisor.py), as here.
    parley = sum(cpu[role] for role in ("api", "worker", "webhook worker", "flower"))
    result = Result(4, "throughput", config={"clients": clients, "seconds": seconds, "model_delay_ms": 0,
                                             "workers": f"{WORKER_PROCESSES} processes, {pool} pool x{concurrency}",
                                             "api": f"{stack.api_processes} processes x {stack.api_threads} threads"})
    result.check("turns per second", rate, ">=", 80, "/s")
    result.check("CPU per turn, Parley's processes", parley, "<=", 20, " ms")
    result.check("CPU per turn, PostgreSQL + Redis", cpu["postgres"] + cpu["redis"], "<=", 6, " ms")
    result.show("turn latency at saturation", brief([s for s, _ in done]))
    system = per_turn(measured.system, len(done), ("api", "worker", "postgres", "redis"))
    result.show("CPU ms per turn", describe(cpu))
    result.show("of it system time (the kernel), ms per turn", describe(system))
    result.show("pipeline CPU per turn", f"{pipeline:.1f} ms (API + workers + PostgreSQL + Redis): at most "
                f"{2000 / pipeline:.0f} turns/s on 2 cores if the model and the driver ran elsewhere")
    result.show("phases p50 under load", timeline.describe(timeline.medians([p for _, p in done])))
    result.figures.update(turns=len(done), latency=spread([s for s, _ in done]), cpu_ms_per_turn=cpu,
                          system_cpu_ms_per_turn=system, pipeline_cpu_ms_per_turn=round(pipeline, 2),
                          parley_cpu_ms_per_turn=round(parley, 2),
                          phases_p50_ms=timeline.medians([p for _, p in done]))
    if measured.profiler:
        result.figures["profiles"] = measured.profiles
        result.show("profiles", f"{stack.base / 'profiles'} (py-spy --gil, raw collapsed stacks)")
    return result
