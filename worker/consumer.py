"""The worker's Celery consumer: Celery's own, kept alive through a lost broker.

With celery 5.7 / kombu 5.7 on Redis, losing the broker while messages are
unacknowledged (always, with acks_late and a turn in flight) ends the worker
with an "Unrecoverable error": Celery's `collect()` releases the transport, and
then both closing the old connection (which restores those messages) and acking
them when their turns finish go through the released transport and raise
AttributeError, which Celery only expects to be a connection error. Those
messages lived in the broker that was lost or will be redelivered after the
visibility timeout; their jobs are rows in PostgreSQL, which the sweeper
re-sends and the claim keeps from running twice. So here the AttributeError
counts as the connection error it is: logged, and the consumer reconnects.
"""
from __future__ import annotations

import logging

from celery.worker.consumer import Consumer

log = logging.getLogger("parley.worker")


class ResilientConsumer(Consumer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Acks and rejects of messages from the lost connection: logged, not fatal.
        self.connection_errors = (*self.connection_errors, AttributeError)

    def on_connection_error_after_connected(self, exc) -> None:
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError as error:  # self.connection is already None: the reconnect goes on
            log.warning("broker connection lost; closing it failed (%r), reconnecting anyway", error)
