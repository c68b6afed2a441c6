"""kombu's Redis transport, publishing through one client per channel.

kombu's Redis channel makes a new `redis.Redis` for every publish, ack and task event
(`Channel.conn_or_acquire`), ~170 µs of CPU each on this machine (most of it copying the
client's response callbacks), about six a turn. The client is only a front for the
channel's connection pool, which kombu already keeps, and is safe to share between
threads (each command checks a connection out of the pool), so this channel keeps one and
makes a new one only when kombu replaces the pool (after a connection error). Celery
takes it by configuration: `broker_transport` (shared/tasks.py), for redis:// and
rediss:// brokers; any other broker URL keeps kombu's own transport.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

import redis
from kombu.transport import redis as kombu_redis

TRANSPORT = "shared.broker:Transport"


class Channel(kombu_redis.Channel):
    _publisher: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        pool, publisher = self.pool, self._publisher
        if publisher is None or publisher.connection_pool is not pool:
            publisher = self._publisher = self._create_client()
        yield publisher


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """This transport for a plain Redis broker; None (kombu's choice by scheme) otherwise."""
    return TRANSPORT if urlsplit(broker_url).scheme in ("redis", "rediss") else None
