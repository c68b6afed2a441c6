"""The one retry layer for model calls.

The SDK's and botocore's own retries are off, and a Celery retry never repeats a model
call that failed: transient failures are retried here, within a time budget.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from shared.backoff import exponential
from shared.cancel import Cancelled, CancelToken
from shared.model.types import ModelError, ModelProvider, ModelReply, ModelRequest

log = logging.getLogger("parley.model")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    budget_seconds: float = 300.0  # all attempts and waits of one reply
    base_seconds: float = 1.0
    cap_seconds: float = 30.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Capped exponential backoff with full jitter; never sooner than the server asked."""
        backoff = exponential(self.base_seconds, retry, self.cap_seconds)
        return max(backoff, min(retry_after or 0.0, self.cap_seconds * 4))


class RetryingProvider:
    """Retries transient failures (429, 529, 5xx, timeouts, resets, errors inside a
    started stream) within a time budget; permanent ones fail at once."""

    def __init__(self, inner: ModelProvider, policy: RetryPolicy):
        self.inner, self.policy = inner, policy

    def complete(self, request: ModelRequest) -> ModelReply:
        cancel = request.cancel or CancelToken()
        max_retries = (self.policy.max_retries if request.max_retries is None
                       else min(request.max_retries, self.policy.max_retries))
        started, retry = time.monotonic(), 0
        while True:
            emitted = False

            def on_text(text: str) -> None:
                nonlocal emitted
                emitted = True
                if request.on_text:
                    request.on_text(text)

            def on_thinking(text: str) -> None:  # a retry's reader must drop partial thinking too
                nonlocal emitted
                emitted = True
                if request.on_thinking:
                    request.on_thinking(text)

            attempt = replace(request, on_text=on_text, on_thinking=on_thinking, on_reset=None, cancel=cancel)
            try:
                return self.inner.complete(attempt)
            except ModelError as error:
                if not error.retryable or retry >= max_retries:
                    raise
                delay = self.policy.delay(retry, error.retry_after)
                if time.monotonic() - started + delay > self.policy.budget_seconds:
                    raise ModelError(error.kind, f"{error.message} (gave up after {retry + 1} attempts)") from error
                log.warning("model call failed (%s), retry %s in %.1fs", error.kind, retry + 1, delay)
                if emitted and request.on_reset:
                    request.on_reset()
                if cancel.wait(delay):
                    raise Cancelled() from error
                retry += 1
