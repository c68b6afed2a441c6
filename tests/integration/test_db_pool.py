"""shared/db.py: a pooled connection that PostgreSQL closed (a restart, a failover, a
terminated backend) is replaced at checkout, so the next statement runs instead of failing;
the per-request reads and the worker's per-turn statements on the pooled connection itself
(first_row, all_rows, prepared)."""
from __future__ import annotations

import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from sqlalchemy import Integer, bindparam, column, func, literal, select, table, text
from sqlalchemy import exc as sql_errors
from sqlalchemy.dialects.postgresql import JSONB

from shared.config import Settings
from shared.db import all_rows, first_row, make_engine, make_sessions, prepared, reading

pg_class = table("pg_class", column("relname"), column("relkind"))
CLASS_OF = select(pg_class.c.relname, pg_class.c.relkind).where(pg_class.c.relname == bindparam("name"))
SERIES = text("SELECT n FROM generate_series(1, :count) AS n")
MISSING = text("SELECT n FROM no_such_table")
# JSON parameters, typed as a turn's commit types them (shared/jobs/sql.TURN_WRITE).
JSON_PAIR = text("SELECT CAST(:nullable AS jsonb) AS nullable, CAST(:kept AS jsonb) AS kept").bindparams(
    bindparam("nullable", type_=JSONB(none_as_null=True)), bindparam("kept", type_=JSONB))
JSON_NULLS = text("SELECT CAST(:nullable AS jsonb) IS NULL AS nullable, CAST(:kept AS jsonb) IS NULL AS kept").bindparams(
    bindparam("nullable", type_=JSONB(none_as_null=True)), bindparam("kept", type_=JSONB))
# A lease renewal's parameters (shared/jobs/sql.EXTEND): lists, as arrays.
PAIRS = text("SELECT id, attempt FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS held (id, attempt)")


@pytest.fixture
def engine(stack):
    """An engine whose pool holds one connection: a test's statements all use it."""
    engine = make_engine(Settings(database_url=stack.settings.database_url).sqlalchemy_url, pool_size=1,
                         max_overflow=0)
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_connection_the_server_closed_is_replaced_before_use(engine, stack):
    first = backend_pid(engine)  # back in the pool, idle
    with psycopg.connect(stack.settings.database_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]
        # Terminated means gone: the server has closed its end before this returns.
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone()[0]:
            pass
    second = backend_pid(engine)  # no OperationalError: the dead one never reached a statement
    assert second != first


def test_first_row_reads_on_the_pooled_connection_and_leaves_it_as_it_was(engine):
    """The per-request reads' path (first_row): a named row or None, and the pooled
    connection goes back out of autocommit, so the next unit of work is a transaction."""
    row = first_row(engine, CLASS_OF, {"name": "pg_class"})
    assert row.relname == "pg_class" and row.relkind == "r"
    assert first_row(engine, CLASS_OF, {"name": "no such relation"}) is None
    with engine.connect() as connection:  # the same (only) pooled connection
        connection.execute(text("CREATE TEMP TABLE scratch (n int)"))
        connection.execute(text("INSERT INTO scratch VALUES (1)"))
        connection.rollback()  # in a transaction, as before: nothing stays
        assert connection.execute(text("SELECT to_regclass('pg_temp.scratch')")).scalar() is None


def prepared_on_the_connection(engine) -> int:
    with engine.begin() as connection:  # ends with COMMIT, so counting keeps them too
        return connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one()


def test_a_read_keeps_the_statements_prepared_on_its_connection(engine):
    """A read session ends with COMMIT: at a ROLLBACK psycopg deallocates every statement
    prepared on the connection, and the next turns on it would prepare them all again."""
    first_row(engine, CLASS_OF, {"name": "pg_class"})
    kept = prepared_on_the_connection(engine)
    assert kept >= 1
    sessions = make_sessions(engine)
    with reading(sessions) as session:
        assert session.execute(select(func.count()).select_from(pg_class)).scalar_one() > 0
    assert prepared_on_the_connection(engine) == kept
    with sessions() as session:  # what a plain session's closing ROLLBACK did
        session.execute(select(literal(1))).scalar_one()
    assert prepared_on_the_connection(engine) == 0


def test_first_row_fails_as_sqlalchemy_and_replaces_a_connection_that_died(engine, stack):
    """Errors are SQLAlchemy's (the API answers a lost database with 503 by them), and a
    connection that died under a read is not pooled again."""
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


def test_all_rows_gives_every_row_of_a_statement_or_none(engine):
    assert [row.n for row in all_rows(engine, SERIES, {"count": 3})] == [1, 2, 3]
    assert all_rows(engine, SERIES, {"count": 0}) == []
    with pytest.raises(sql_errors.ProgrammingError):  # SQLAlchemy's, as first_row's
        all_rows(engine, MISSING, {})


def test_all_rows_sends_lists_as_arrays(engine):
    """A lease renewal's ids and attempts, as the worker passes them (UUIDs, ints)."""
    ids = [uuid.uuid4(), uuid.uuid4()]
    rows = all_rows(engine, PAIRS, {"ids": ids, "attempts": [1, 70000]})
    assert [(row.id, row.attempt) for row in rows] == [(ids[0], 1), (ids[1], 70000)]
    assert all_rows(engine, PAIRS, {"ids": [], "attempts": []}) == []


def test_a_database_that_cannot_be_reached_fails_as_sqlalchemy():
    """A claim or renewal during an outage raises OperationalError, which the worker hands
    back for a retry (worker/pipeline.py TRANSIENT)."""
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", pool_size=1, max_overflow=0)
    try:
        with pytest.raises(sql_errors.OperationalError):
            all_rows(engine, SERIES, {"count": 1})
    finally:
        engine.dispose()


@pytest.fixture
def scratch_engine(engine):
    table_name = f"scratch_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE {table_name} (n int PRIMARY KEY)"))
    yield engine, table_name
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {table_name}"))


def test_prepared_statements_commit_together_when_the_block_ends(scratch_engine):
    """A turn's commit (shared/jobs commit_turn): its statements are one transaction."""
    engine, name = scratch_engine
    insert, count = text(f"INSERT INTO {name} VALUES (:n) RETURNING n"), text(f"SELECT count(*) AS rows FROM {name}")
    with prepared(engine) as run:
        assert run(insert, {"n": 1}).fetchone().n == 1
        assert run(insert, {"n": 2}).fetchone().n == 2
    assert first_row(engine, count, {}).rows == 2


def test_prepared_statements_roll_back_together_on_any_error(scratch_engine):
    engine, name = scratch_engine
    insert, count = text(f"INSERT INTO {name} VALUES (:n)"), text(f"SELECT count(*) AS rows FROM {name}")
    with pytest.raises(RuntimeError):
        with prepared(engine) as run:
            run(insert, {"n": 1})
            raise RuntimeError("the caller failed after a write")
    with pytest.raises(sql_errors.IntegrityError):  # the database's error, as SQLAlchemy's
        with prepared(engine) as run:
            run(insert, {"n": 2})
            run(insert, {"n": 2})
    assert first_row(engine, count, {}).rows == 0
    with prepared(engine) as run:  # the same pooled connection, usable again
        run(insert, {"n": 3})
    assert first_row(engine, count, {}).rows == 1


def test_prepared_json_parameters_are_sent_as_the_column_type_says(engine):
    """As through SQLAlchemy: None is SQL NULL where the type says none_as_null and JSON
    null otherwise; a dict goes as JSONB and comes back as it was."""
    nulls = {"nullable": None, "kept": None}
    with engine.connect() as connection:
        through_sqlalchemy = tuple(connection.execute(JSON_NULLS, nulls).one())
    assert through_sqlalchemy == (True, False)
    assert tuple(first_row(engine, JSON_NULLS, nulls)) == through_sqlalchemy
    reply = {"content": "héllo", "usage": {"input_tokens": 3}, "blocks": [1, None, True]}
    assert tuple(first_row(engine, JSON_PAIR, {"nullable": reply, "kept": []})) == (reply, [])