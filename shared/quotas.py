"""A daily model-token quota per user, counted in Redis.

One counter per user and UTC day, expiring after the day is over. Redis is a
cache here too: losing it forgives the day's count, it loses no user data.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Callable

import logging
from typing import TYPE_CHECKING

import redis

from shared.refusals import TooMany

if TYPE_CHECKING:
    from shared.bootstrap import Services
    from shared.models import User

log = logging.getLogger("parley.quota")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class TokenQuota:
    """`limit_per_day` model tokens (input + output) per user; 0 means unlimited."""

    def __init__(self, client: redis.Redis, limit_per_day: int, clock: Callable[[], datetime] = _utc_now):
        self.client, self.limit, self.clock = client, limit_per_day, clock

    def _key(self, user_id: object, now: datetime) -> str:
        return f"parley:quota:tokens:{user_id}:{now:%Y%m%d}"

    def _seconds_to_midnight(self, now: datetime) -> float:
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - now).total_seconds()

    def record(self, user_id: object, tokens: int) -> int:
        """Add `tokens` to today's count; returns the new count."""
        now = self.clock()
        key = self._key(user_id, now)
        pipe = self.client.pipeline(transaction=True)
        pipe.incrby(key, max(0, int(tokens)))
        # Kept an hour past midnight so a clock a little behind still finds it.
        pipe.expire(key, math.ceil(self._seconds_to_midnight(now)) + 3600)
        return int(pipe.execute()[0])

    def used(self, user_id: object) -> int:
        return int(self.client.get(self._key(user_id, self.clock())) or 0)

    def check(self, user_id: object) -> int | None:
        """Seconds until the quota resets if `user_id` has used it up today, else None."""
        if self.limit <= 0:
            return None
        now = self.clock()
        if int(self.client.get(self._key(user_id, now)) or 0) < self.limit:
            return None
        return max(1, math.ceil(self._seconds_to_midnight(now)))


def enforce_token_quota(services: Services, user: User) -> None:
    """429 with Retry-After once `user` has spent MODEL_TOKENS_PER_DAY today.

    With Redis unreachable the request is allowed: the quota is a guard, not a ledger.
    """
    limit = services.settings.model_tokens_per_day
    try:
        retry_after = TokenQuota(services.redis, limit).check(user.id)
    except (redis.ConnectionError, redis.TimeoutError) as error:
        log.warning("token quota not checked, Redis unavailable: %s", error)
        return
    if retry_after is not None:
        raise TooMany("quota_exceeded", f"Today's model token quota ({limit}) is used up; it resets at 00:00 UTC.",
                      retry_after)

