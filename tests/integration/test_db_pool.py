"""shared/db.py: a pooled connection that PostgreSQL closed (a restart, a failover, a
terminated backend) is replaced at checkout, so the next statement runs instead of failing."""
from __future__ import annotations

import psycopg
from sqlalchemy import text

from shared.config import Settings
from shared.db import make_engine


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_the_server_closed_is_replaced_before_use(stack):
    engine = make_engine(Settings(database_url=stack.settings.database_url).sqlalchemy_url, pool_size=1,
                         max_overflow=0)
    try:
        first = backend_pid(engine)  # back in the pool, idle
        with psycopg.connect(stack.settings.database_url, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]
            # Terminated means gone: the server has closed its end before this returns.
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone()[0]:
                pass
        second = backend_pid(engine)  # no OperationalError: the dead one never reached a statement
        assert second != first
    finally:
        engine.dispose()
