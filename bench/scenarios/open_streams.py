"""9. Open streams at scale.

1,000, then 5,000, then 10,000 open waits at once against the API as `make run` starts
it (gevent worker, API_CONNECTIONS, two processes): nine in ten `GET /v1/jobs/{id}/events`
streams, one in ten `GET /v1/jobs/{id}?wait=30` long-polls (asked again when they
answer, as a client does), each on its own job, held by a separate process of raw
asyncio sockets. At each step, while they are all open: ordinary requests
(`GET /v1/conversations?limit=5`, one at a time from this process) and their p50 / p99
and failures, the RSS of all API processes, and the API's connections to Redis
(counted on the API processes' sockets; CLIENT LIST's total beside it). Then every job
gets DELTAS deltas and its final event through the workers' own path (JobEvents.add):
each stream must have every event in order, ending with the final one, and each
long-poll its finished job. The jobs are held by no worker (seed.running_jobs), so the
streams are idle but for their pings until then.
"""
from __future__ import annotations

import multiprocessing
import time

import httpx2
import psutil
from sqlalchemy import text

from bench import seed
from bench.report import Result, ms, percentile
from bench.stream_holder import hold
from bench.stack import BenchStack

STEPS, QUICK_STEPS = (1000, 5000, 10_000), (200, 500)
PER_USER = 250  # below MAX_OPEN_STREAMS_PER_USER (500 per process)
LONG_POLL_EVERY = 10  # one wait in ten is a long-poll
ORDINARY, ORDINARY_PER_SECOND = 300, 30
DELTAS = 3


def ordinary_requests(stack: BenchStack, count: int) -> tuple[list[float], list[str]]:
    took, failures = [], []
    with httpx2.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.key}"},
                       timeout=10) as http:
        for _ in range(count):
            began = time.perf_counter()
            try:
                response = http.get("/v1/conversations", params={"limit": 5})
                if response.status_code != 200:
                    failures.append(f"{response.status_code}: {response.text[:100]}")
                else:
                    took.append(time.perf_counter() - began)
            except httpx2.HTTPError as error:
                failures.append(f"{type(error).__name__}: {error}")
            time.sleep(max(0.0, 1 / ORDINARY_PER_SECOND - (time.perf_counter() - began)))
    return took, failures


def api_rss_mb(stack: BenchStack) -> float:
    return round(sum(p.memory_info().rss for p in stack.api.tree()) / 2**20, 1)


def api_redis_connections(stack: BenchStack) -> int:
    port = int(stack.settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    return sum(1 for p in stack.api.tree() for c in p.net_connections("tcp")
               if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def idle_jobs(stack: BenchStack, user, count: int) -> list[str]:
    """Jobs that look held by a worker elsewhere while the model talks for an hour (as
    seed.running_jobs makes them, in one statement for speed), each with its job.queued."""
    conversations = seed.conversations(stack.services, user, count, "open")
    with stack.services.engine.begin() as connection:
        job_ids = [str(row[0]) for row in connection.execute(text("""
            INSERT INTO jobs (id, user_id, conversation_id, status, request, attempts, worker, started_at,
                              lease_expires_at)
            SELECT gen_random_uuid(), :user, c, 'running', CAST('{"content": "an idle stream"}' AS jsonb), 1,
                   'bench-phantom', now(), now() + interval '1 hour'
              FROM unnest(CAST(:conversations AS uuid[])) AS c RETURNING id"""),
            {"user": user.id, "conversations": conversations})]
    for job_id in job_ids:
        stack.services.events.add(job_id, "job.queued", {"id": job_id, "status": "queued"})
    return job_ids


def make_waits(stack: BenchStack, total: int) -> list[tuple[str, str, str]]:
    """(kind, job id, key) for `total` waits: users of PER_USER jobs each."""
    waits = []
    for n in range(0, total, PER_USER):
        user, key = stack.new_user(f"bench-open-{n // PER_USER}")
        for i, job_id in enumerate(idle_jobs(stack, user, min(PER_USER, total - n))):
            waits.append(("poll" if (n + i) % LONG_POLL_EVERY == LONG_POLL_EVERY - 1 else "stream", job_id, key))
    return waits


def finish_all(stack: BenchStack, job_ids: list[str]) -> None:
    """What a worker does for each job: deltas, the row, then the final event."""
    events = stack.services.events
    for job_id in job_ids:
        events.add(job_id, "job.started", {"attempt": 1})
        for n in range(DELTAS):
            events.add(job_id, "message.delta", {"text": f"part {n} "})
    with stack.services.engine.begin() as connection:
        connection.execute(text("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = ANY(:ids)"),
                           {"ids": job_ids})
    for job_id in job_ids:
        events.add(job_id, "job.succeeded", {"id": job_id, "status": "succeeded"})


def run(stack: BenchStack, quick: bool) -> Result:
    steps = QUICK_STEPS if quick else STEPS
    stack.use_workers(1, 4)  # not used by these jobs; the stack as make run has it
    result = Result(9, "open streams", config={"steps": list(steps), "long_poll_every": LONG_POLL_EVERY,
                                               "ordinary_requests": ORDINARY, "per_second": ORDINARY_PER_SECOND})
    began = time.monotonic()
    waits = make_waits(stack, steps[-1])
    result.figures["seed_seconds"] = round(time.monotonic() - began, 1)
    context = multiprocessing.get_context("spawn")
    commands, replies = context.Queue(), context.Queue()
    holder = context.Process(target=hold, args=(stack.api_url, commands, replies), daemon=True)
    holder.start()
    idle = {"rss_mb": api_rss_mb(stack), "redis_connections": api_redis_connections(stack)}
    result.figures["idle"] = idle
    steps_figures, opened_so_far = [], 0
    try:
        for size in steps:
            began = time.monotonic()
            commands.put(("open", waits[opened_so_far:size]))
            opened, failures = replies.get(timeout=600)
            opened_so_far = size
            step = {"open": opened, "open_failures": failures[:5], "n_open_failures": len(failures),
                    "open_seconds": round(time.monotonic() - began, 1)}
            took, failed = ordinary_requests(stack, ORDINARY)
            commands.put(("count",))
            still_open, dropped = replies.get(timeout=60)
            step.update(p50_ms=ms(percentile(took, 50)), p99_ms=ms(percentile(took, 99)),
                        failures=len(failed), failure_examples=failed[:3], still_open=still_open,
                        dropped=dropped[:5], rss_mb=api_rss_mb(stack),
                        redis_connections=api_redis_connections(stack),
                        redis_clients_total=len(stack.services.redis.client_list()))
            steps_figures.append(step)
            print(f"bench:   {size} waits: {step}", flush=True)
            result.check(f"{size}: open", still_open, ">=", size)
            result.check(f"{size}: ordinary p50", step["p50_ms"], "<=", 50, "ms")
            result.check(f"{size}: ordinary p99", step["p99_ms"], "<=", 200, "ms")
            result.check(f"{size}: ordinary failures", len(failed), "<=", 0)
        began = time.monotonic()
        finish_all(stack, [job_id for _, job_id, _ in waits])
        commands.put(("collect", DELTAS))
        complete, wrong = replies.get(timeout=600)
        result.figures["delivery_seconds"] = round(time.monotonic() - began, 1)
        result.figures["delivery_wrong"] = wrong[:5]
        result.check("every wait got all its events in order", complete, ">=", len(waits))
        last = steps_figures[-1]
        result.check(f"{steps[-1]}: API RSS", last["rss_mb"], "<=", 1024, "MB")
    finally:
        commands.put(("stop",))
        holder.join(30)
        if holder.is_alive():
            holder.kill()
        for n in range(0, steps[-1], PER_USER):
            user, _ = stack.new_user(f"bench-open-{n // PER_USER}")
            seed.drop_conversations(stack.services, user)
    result.figures["steps"] = steps_figures
    for step, size in zip(steps_figures, steps):
        result.show(f"{size} waits", f"ordinary p50 {step['p50_ms']:g} / p99 {step['p99_ms']:g} ms, "
                                     f"{step['failures']} failed; API RSS {step['rss_mb']:g} MB; "
                                     f"API↔Redis connections {step['redis_connections']}")
    return result
