"""5. Streaming.

a. Time to first token through Parley beside the offline model's own: one sample
   is a submit-and-stream (`POST …/messages`, `Accept: text/event-stream`) timed
   from sending to the first `message.delta`, the next a direct streamed call to
   the model timed from sending to its first `content_block_delta`; alternated.
b. 500 idle open SSE streams while scenario 1's HTTP turns run: the turns' p50
   with the streams open over the p50 of blocks run before and after, without.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time

import httpx2

from bench import seed, timeline
from bench.client import Api, AsyncApi
from bench.report import Result, brief, noise, percentile, spread
from bench.scenarios.overhead import measure
from bench.stack import BenchStack

MESSAGE = "Tell me a short story about a lighthouse."
MODEL = {"delay_ms": 50, "stream_delay_ms": 50, "chunk_chars": 8}


def model_first_token(http: httpx2.Client, model_url: str, model: str) -> float:
    body = {"model": model, "max_tokens": 1024, "stream": True, "system": "You are a helpful assistant.",
            "messages": [{"role": "user", "content": MESSAGE}]}
    started = time.perf_counter()
    with http.stream("POST", model_url + "/v1/messages", json=body,
                     headers={"x-api-key": "offline", "anthropic-version": "2023-06-01"}) as response:
        first = None
        for event in httpx2.EventSource(response):  # read to the end, as the SDK does
            if event.event == "content_block_delta" and first is None:
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the model streamed no text")
    return first


FIRST_TOKEN_SPANS = ("api before submit", "submit to claim", "claim to first delta")


def parley_first_token(api: Api, conversation_id: str) -> tuple[float, list[float]]:
    """Seconds to the first `message.delta`, and that time split by the job's own timestamps."""
    sent, started = time.time(), time.perf_counter()
    first = None
    for arrived, event in api.stream_turn(conversation_id, MESSAGE):
        if event.event == "message.delta" and first is None:
            first = arrived - started
        if event.event.startswith("job.") and event.event not in ("job.queued", "job.started"):
            if event.event != "job.succeeded":
                raise RuntimeError(f"streamed turn ended {event.event}: {event.data[:200]}")
            job = json.loads(event.data)
            created, claimed = timeline.at(job["created_at"]), timeline.at(job["started_at"])
            return first, [created - sent, claimed - created, sent + first - claimed]
    raise RuntimeError("the stream ended without a final event")


def first_token(stack: BenchStack, samples: int) -> tuple[list[float], list[float], list[list[float]]]:
    stack.model_control(**MODEL)
    api, http = Api(stack.api_url, stack.key), httpx2.Client(timeout=30)
    through, direct, spans = [], [], []
    model = getattr(stack.settings, "default_model", None) or stack.settings.model
    try:
        for i in range(samples + 5):
            if i % 10 == 0:
                conversation = api.new_conversation()
            parley, split = parley_first_token(api, conversation)
            own = model_first_token(http, stack.model_url, model)
            if i >= 5:
                through.append(parley)
                direct.append(own)
                spans.append(split)
    finally:
        api.close()
        http.close()
    return through, direct, spans


class IdleStreams:
    """`GET /v1/jobs/{id}/events` held open for each job, from an event loop in a thread."""

    def __init__(self, api_url: str, key: str, job_ids: list[str]):
        self.api_url, self.key, self.job_ids = api_url, key, job_ids
        self.opened = 0
        self.all_open = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)
        self.failures: list[str] = []

    async def _hold(self, api: AsyncApi, job_id: str) -> None:
        """Read the stream (its pings) until cancelled; the first event means it is open."""
        try:
            await api.hold_events(job_id, self._opened)
        except Exception as error:  # noqa: BLE001 - counted and reported
            self.failures.append(f"{type(error).__name__}: {error}")
            self._settled()

    def _opened(self) -> None:
        self.opened += 1
        self._settled()

    def _settled(self) -> None:
        if self.opened + len(self.failures) >= len(self.job_ids):
            self.all_open.set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        api = AsyncApi(self.api_url, self.key, connections=len(self.job_ids) + 10)
        holds = [asyncio.create_task(self._hold(api, job_id)) for job_id in self.job_ids]
        try:
            await self._stop.wait()
        finally:
            for hold in holds:
                hold.cancel()
            await asyncio.gather(*holds, return_exceptions=True)
            await api.close()

    def open(self, timeout: float) -> "IdleStreams":
        """Start them; returns once all have their first event, or `timeout` passes."""
        self.thread.start()
        self.all_open.wait(timeout)
        return self

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)


def idle_streams_effect(stack: BenchStack, streams: int, turns: int) -> dict:
    stack.model_control(delay_ms=0)
    idle_user, idle_key = stack.new_user("bench-idle")
    job_ids = seed.running_jobs(stack.services, idle_user, streams)
    before = measure(stack, turns, in_process=False)
    began = time.perf_counter()
    held = IdleStreams(stack.api_url, idle_key, job_ids).open(timeout=30)
    opening, opened, failures = time.perf_counter() - began, held.opened, list(held.failures)
    try:
        during = measure(stack, turns, in_process=False)
    finally:
        held.close()
        seed.drop_conversations(stack.services, idle_user)  # the streams' jobs go with them
    time.sleep(stack.settings.sse_ping_seconds + 1)  # server threads notice the ends at their next ping
    after = measure(stack, turns, in_process=False)
    return {"before": before.http, "during": during.http, "after": after.http, "open_seconds": opening,
            "opened": opened, "failures": failures,
            "failed_turns": before.failures + during.failures + after.failures}


def run(stack: BenchStack, quick: bool) -> Result:
    stack.use_workers(1, stack.settings.worker_concurrency)
    samples, streams, turns = (10, 50, 20) if quick else (100, 500, 150)
    through, direct, spans = first_token(stack, samples)
    idle = idle_streams_effect(stack, streams, turns)
    without = idle["before"] + idle["after"]
    rise = percentile(idle["during"], 50) / percentile(without, 50) - 1
    result = Result(5, "streaming", config={"samples": samples, "model": MODEL, "idle_streams": streams,
                                            "turns_per_block": turns,
                                            "sse_ping_seconds": stack.settings.sse_ping_seconds,
                                            "api": f"{stack.api_processes} processes x {stack.api_threads} threads"})
    result.check("p50 extra time to first token", (percentile(through, 50) - percentile(direct, 50)) * 1000,
                 "<=", 20, " ms")
    result.check(f"p50 rise with {streams} idle streams", rise * 100, "<=", 20, " %")
    result.check("idle streams open (first event within 30 s)", idle["opened"], ">=", streams)
    result.check("failed HTTP turns", len(idle["failed_turns"]), "<=", 0)
    result.show("first token through Parley", brief(through))
    result.show("first token from the model", brief(direct))
    split = {name: round(statistics.median(row[i] for row in spans) * 1000, 2)
             for i, name in enumerate(FIRST_TOKEN_SPANS)}
    result.show("first token through Parley, p50 by span", timeline.describe(split) +
                f" (the model's own first token is {percentile(direct, 50) * 1000:.1f} ms of the last)")
    result.show("turn p50 without / with streams", f"{percentile(without, 50) * 1000:.2f} / "
                f"{percentile(idle['during'], 50) * 1000:.2f} ms (before {percentile(idle['before'], 50) * 1000:.2f}, "
                f"after {percentile(idle['after'], 50) * 1000:.2f}); {idle['opened']} of {streams} streams open after "
                f"{idle['open_seconds']:.1f} s" + (f"; failed: {idle['failures'][0]}" if idle["failures"] else ""))
    if idle["failed_turns"]:
        result.show("first failed turn", idle["failed_turns"][0])
    result.show("noise (MAD/median)", f"first token {noise(through)}, model {noise(direct)}, "
                f"turns without streams {noise(without)}")
    result.figures.update(first_token_parley=spread(through), first_token_model=spread(direct),
                          first_token_spans_p50_ms=split,
                          turns_without_streams=spread(without), turns_with_streams=spread(idle["during"]),
                          turns_before=spread(idle["before"]), turns_after=spread(idle["after"]),
                          streams_open_seconds=round(idle["open_seconds"], 2), streams_opened=idle["opened"],
                          stream_failures=idle["failures"][:5])
    return result
