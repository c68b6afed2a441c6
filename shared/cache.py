"""Redis: the cached context windows (job events are in shared/events.py).

Redis holds nothing that cannot be rebuilt from PostgreSQL and the log.
"""
from __future__ import annotations

import redis

from shared.memory import ConversationMemory


def make_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=15,
        retry_on_timeout=False,
        # Each open SSE stream and waiting long-poll holds a connection; redis-py's
        # default cap (100) would refuse streams long before API_THREADS is reached.
        max_connections=10_000,
    )


def _window_key(conversation_id: object) -> str:
    return f"parley:window:{conversation_id}"


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
