"""How a turn whose backing service failed is tried again.

The job is handed back and its task retries with exponential backoff and
jitter. The sweeper re-sends a handed-back job only when those retries have
plainly stopped (their message was lost with the broker), so an outage does
not turn into a new model call for every job at every sweep.
"""
from __future__ import annotations

from shared.backoff import exponential

RETRY_CAP_SECONDS = 30.0
# The longest a handed-back job waits for its task's next retry.
LONGEST_RETRY_SECONDS = RETRY_CAP_SECONDS * 1.5


def backoff(base: float, retries: int) -> float:
    """The delay before retry number `retries + 1`: `base` doubled per earlier retry,
    at most RETRY_CAP_SECONDS, plus up to half again at random so that jobs handed
    back together (a service went down) do not all come back at once."""
    return exponential(base, retries, RETRY_CAP_SECONDS, spread=(1.0, 1.5))
