"""The one backoff formula: doubling, capped, spread within each caller's bounds."""
from __future__ import annotations

import random

from shared.backoff import exponential


def test_doubles_up_to_the_cap_and_stays_within_the_spread():
    random.seed(7)
    for attempt in range(60):
        plain = min(30.0, 2.0 * 2 ** attempt)
        for spread in ((0.0, 1.0), (0.5, 1.0), (1.0, 1.5)):
            delay = exponential(2.0, attempt, 30.0, spread)
            assert plain * spread[0] <= delay <= plain * spread[1]
    assert exponential(2.0, 3, 30.0, (1.0, 1.0)) == 16.0 and exponential(2.0, 4, 30.0, (1.0, 1.0)) == 30.0
