"""6. Long-poll: how soon `GET /v1/jobs/{id}?wait=30` answers once the job has finished.

"Finished" is the moment the worker publishes the job's end on Redis (after its
commit): a subscriber in this process, listening on the same channels as the
API's long-polls, notes when each end arrives. Redis hands a publish to every
subscriber at once, so the gap between that note and the HTTP response in hand
is the long-poll's own delay: waking, re-reading the job, answering. The model
takes 200 ms, so each long-poll is already waiting when its job ends.
"""
from __future__ import annotations

import threading
import time

from bench.client import Api
from bench.report import Result, brief, noise, percentile, spread
from bench.stack import BenchStack
from bench.timeline import at
from shared.events import job_id_of

MESSAGE = "Reply when ready."
MODEL_DELAY_MS = 200


class EndListener:
    """Notes when each job's end is published (perf_counter), from a thread of its own."""

    def __init__(self, events):
        self.pubsub = events.subscribe_all_finished()
        self.seen: dict[str, float] = {}
        self.arrived = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="end-listener", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.5)
            if message is not None:
                noted = time.perf_counter()
                with self.arrived:
                    self.seen[job_id_of(message["channel"])] = noted
                    self.arrived.notify_all()

    def when(self, job_id: str, timeout: float = 5.0) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: job_id in self.seen, timeout):
                raise RuntimeError(f"the end of job {job_id} was never published")
            return self.seen.pop(job_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()


def run(stack: BenchStack, quick: bool) -> Result:
    stack.use_workers(1, stack.settings.worker_concurrency)
    stack.model_control(delay_ms=MODEL_DELAY_MS)
    turns, warmup = (15, 3) if quick else (100, 5)
    api, listener = Api(stack.api_url, stack.key), EndListener(stack.services.events)
    after_publish, after_finished_at, early = [], [], 0
    try:
        conversation = api.new_conversation()
        for i in range(warmup + turns):
            job = api.submit(conversation, MESSAGE)
            asked = time.perf_counter()
            final = api.wait(job["id"])
            answered, answered_wall = time.perf_counter(), time.time()
            published = listener.when(job["id"])
            if i < warmup:
                continue
            if published < asked:  # ended before the long-poll began: not a wake-up
                early += 1
                continue
            after_publish.append(answered - published)
            after_finished_at.append(answered_wall - at(final["finished_at"]))
    finally:
        listener.close()
        api.close()
    result = Result(6, "long-poll", config={"turns": turns, "model_delay_ms": MODEL_DELAY_MS})
    result.check("p50 answer after publish", percentile(after_publish, 50) * 1000, "<=", 10, " ms")
    result.show("answer after end published", brief(after_publish))
    result.show("answer after finished_at", brief(after_finished_at) + " (includes the commit, window save, publish)")
    result.show("noise (MAD/median)", f"{noise(after_publish)}; jobs ended before their long-poll began: {early}")
    result.figures.update(after_publish=spread(after_publish), after_finished_at=spread(after_finished_at),
                          ended_before_wait=early)
    return result
