"""The one backoff formula: a base delay doubled per earlier attempt, capped, and spread
by a random factor so that many callers failing together do not retry together.

Each caller picks its spread: the model calls use full jitter (0 to 1: the retries of
many turns against one rate limit spread out most), webhook deliveries 0.5 to 1, and a
handed-back turn 1 to 1.5 (never sooner than its doubling, so the sweeper can tell a
lost retry from a waiting one)."""
from __future__ import annotations

import random


def exponential(base: float, attempt: int, cap: float, spread: tuple[float, float] = (0.0, 1.0)) -> float:
    """The delay before retry `attempt + 1` (`attempt` earlier retries)."""
    return min(cap, base * 2 ** min(attempt, 32)) * random.uniform(*spread)
