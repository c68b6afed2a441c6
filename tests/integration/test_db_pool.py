"""shared/db.py: a pooled connection that PostgreSQL closed (a restart, a failover, a
terminated backend) is replaced at checkout, so the next statement runs instead of failing;
the per-request reads on the pooled connection itself (first_row)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import Integer, bindparam, column, func, literal, select, table, text
from sqlalchemy import exc as sql_errors

from shared.config import Settings
from shared.db import first_row, make_engine

pg_class = table("pg_class", column("relname"), column("relkind"))
CLASS_OF = select(pg_class.c.relname, pg_class.c.relkind).where(pg_class.c.relname == bindparam("name"))


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


def test_first_row_reads_on_the_pooled_connection_and_leaves_it_as_it_was(stack):
    """The per-request reads' path (first_row): a named row or None, and the pooled
    connection goes back out of autocommit, so the next unit of work is a transaction."""
    engine = make_engine(Settings(database_url=stack.settings.database_url).sqlalchemy_url, pool_size=1,
                         max_overflow=0)
    try:
        row = first_row(engine, CLASS_OF, {"name": "pg_class"})
        assert row.relname == "pg_class" and row.relkind == "r"
        assert first_row(engine, CLASS_OF, {"name": "no such relation"}) is None
        with engine.connect() as connection:  # the same (only) pooled connection
            connection.execute(text("CREATE TEMP TABLE scratch (n int)"))
            connection.execute(text("INSERT INTO scratch VALUES (1)"))
            connection.rollback()  # in a transaction, as before: nothing stays
            assert connection.execute(text("SELECT to_regclass('pg_temp.scratch')")).scalar() is None
    finally:
        engine.dispose()


def test_first_row_fails_as_sqlalchemy_and_replaces_a_connection_that_died(stack):
    """Errors are SQLAlchemy's (the API answers a lost database with 503 by them), and a
    connection that died under a read is not pooled again."""
    engine = make_engine(Settings(database_url=stack.settings.database_url).sqlalchemy_url, pool_size=1,
                         max_overflow=0)
    try:
        with pytest.raises(sql_errors.DataError):
            first_row(engine, select(literal(1) / bindparam("zero", type_=Integer)), {"zero": 0})
        first = backend_pid(engine)  # the failed statement left the connection usable
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(first_row, engine, select(func.pg_sleep(30)), {})
            with psycopg.connect(stack.settings.database_url, autocommit=True) as admin:
                # Terminated while the read waits on it: the read sees its connection die.
                while not admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %s "
                                        "AND query LIKE '%%pg_sleep%%'", (first,)).fetchall():
                    pass
            with pytest.raises(sql_errors.OperationalError):
                reading.result(timeout=30)
        assert backend_pid(engine) != first
    finally:
        engine.dispose()
