"""Redis: the cached context windows and "job finished" notifications.

Redis holds nothing that cannot be rebuilt from PostgreSQL and the log.
"""
from __future__ import annotations

import time

import redis

from shared.memory import ConversationMemory


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=15,
        retry_on_timeout=False, max_connections=200,
    )


def _window_key(conversation_id: object) -> str:
    return f"parley:window:{conversation_id}"


def _job_channel(job_id: object) -> str:
    return f"parley:job:{job_id}:finished"


class WindowCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.client, self.ttl = client, ttl_seconds

    def get(self, conversation_id: object) -> ConversationMemory | None:
        raw = self.client.get(_window_key(conversation_id))
        return ConversationMemory.from_json(raw) if raw else None

    def put(self, conversation_id: object, memory: ConversationMemory) -> None:
        self.client.set(_window_key(conversation_id), memory.to_json(), ex=self.ttl)

    def delete(self, conversation_id: object) -> None:
        self.client.delete(_window_key(conversation_id))


class JobNotifier:
    """Pub/sub so a long-poll answers the moment its job finishes."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def publish_finished(self, job_id: object, status: str) -> None:
        self.client.publish(_job_channel(job_id), status)

    def wait_finished(self, job_id: object, timeout: float, is_final) -> None:
        """Return when `is_final()` holds, a finish is published, or `timeout` passes.

        Subscribes before the first check, so a finish between the check and
        the wait is not missed.
        """
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(_job_channel(job_id))
            if is_final():
                return
            deadline = time.monotonic() + timeout
            while (remaining := deadline - time.monotonic()) > 0:
                if pubsub.get_message(timeout=min(remaining, 5.0)) is not None:
                    return
        finally:
            pubsub.close()
