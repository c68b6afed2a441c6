"""The Redis broker transport (shared/broker.py): Celery takes it by configuration, every
task still reaches its queue through one publishing client, and a replaced connection pool
(kombu's answer to a connection error) gets a client of its own."""
from __future__ import annotations

import uuid

import redis

from shared import broker
from shared.tasks import make_celery


def _send(app, queue: str, count: int) -> None:
    for n in range(count):
        app.send_task("parley.test.nothing", args=[n], queue=queue)


def test_tasks_arrive_through_one_client_and_a_new_one_after_the_pool_is_replaced(stack):
    app = make_celery(stack.settings, "broker-test")
    queue = f"parley.test.{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(stack.settings.celery_broker_url)
    try:
        with app.producer_or_acquire() as producer:  # the pooled producer send_task uses next
            channel = producer.channel
            assert isinstance(channel, broker.Channel), type(channel)
        _send(app, queue, 3)
        assert client.llen(queue) == 3
        first = channel._publisher
        assert first is not None and first.connection_pool is channel.pool

        channel._disconnect_pools()  # what kombu does when a connection breaks
        _send(app, queue, 2)
        assert client.llen(queue) == 5  # nothing lost through the stale client
        assert channel._publisher is not first and channel._publisher.connection_pool is channel.pool
    finally:
        client.delete(queue)
        client.close()
        app.close()


def test_other_brokers_keep_kombus_transport():
    assert broker.transport_for("redis://localhost:6379/0") == broker.TRANSPORT
    assert broker.transport_for("rediss://cache.example:6380/0") == broker.TRANSPORT
    assert broker.transport_for("sentinel://localhost:26379") is None
    assert broker.transport_for("amqp://guest@localhost//") is None
