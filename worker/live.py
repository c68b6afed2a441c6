"""A running job's live events (job.started, message.delta, message.reset)."""
from __future__ import annotations

import logging
import uuid

import redis

from shared.bootstrap import Services
from shared.cancel import Cancelled, CancelToken

log = logging.getLogger(__name__)


class LiveEvents:
    """The job's events as it runs. Best effort: if Redis is down the turn still
    completes (readers fall back to PostgreSQL); if the job already ended
    elsewhere, the turn stops."""

    def __init__(self, services: Services, job_id: uuid.UUID, token: CancelToken):
        self.events, self.job_id, self.token = services.events, job_id, token
        self.broken = False

    def add(self, type_: str, data: dict) -> None:
        if self.broken:
            return
        try:
            number = self.events.add(self.job_id, type_, data)
        except redis.RedisError as error:
            log.warning("job %s: live events stopped, Redis failed: %s", self.job_id, error)
            self.broken = True
            return
        if number is None:  # the job has its final event: cancelled meanwhile
            self.token.cancel()
            raise Cancelled()
