"""Engine, unit-of-work sessions, and single statements outside a transaction."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import orjson
import psycopg
from psycopg import OperationalError
from psycopg.pq import ConnStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ClauseElement


def make_engine(url: str, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    # connect_timeout keeps an outage a quick 503 instead of a hang; the checkout check
    # makes connections recover by themselves once PostgreSQL is back.
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=10, connect_args={"connect_timeout": 5}, future=True,
        json_serializer=orjson.dumps, json_deserializer=orjson.loads,  # JSONB columns: a turn's entry, a job's reply
    )
    event.listen(engine, "checkout", _check_alive)
    return engine


def _check_alive(dbapi_connection, record, proxy) -> None:
    """A pooled connection the server has closed is replaced before use (the pool retries
    with a new one), like SQLAlchemy's pool_pre_ping but without its round trip (a
    `SELECT 1` on every checkout, a fifth of a short transaction's cost): a server that
    went away (restart, failover, a terminated backend) sent its goodbye and closed the
    socket, and reading what is waiting there shows it. Two reads, because the first may
    take only the goodbye message. Anything this misses (a peer gone without a word)
    fails the statement instead, and SQLAlchemy then replaces every pooled connection."""
    pgconn = dbapi_connection.pgconn
    try:
        for _ in range(2):
            pgconn.consume_input()  # non-blocking: reads only what has arrived
    except OperationalError as error:
        raise DisconnectionError(str(error)) from error
    if pgconn.status != ConnStatus.OK:
        raise DisconnectionError("connection closed by the server")


@contextmanager
def one_statement(engine: Engine) -> Iterator[Connection]:
    """A pooled connection in autocommit, for work that is one statement: a read, or an
    UPDATE that is atomic by itself (a job handed back). psycopg otherwise opens a
    transaction before the first statement (a `BEGIN`, a round trip of its own) and it is
    committed or rolled back after (another); one statement sees one snapshot and commits
    alone either way, so this is one round trip instead of three. Autocommit is a flag of
    the client (nothing is sent to set it), put back when the pool takes the connection
    back. Never for statements that must commit together."""
    with engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


def first_row(engine: Engine, statement: ClauseElement, params: dict[str, Any]) -> Any | None:
    """The first row of one statement, as a named tuple, or None (`_prepared`). For the
    reads of every request (the key's owner, a long-poll's job) and a worker's claim."""
    return _prepared(engine, statement, params, psycopg.Cursor.fetchone)


def all_rows(engine: Engine, statement: ClauseElement, params: dict[str, Any]) -> list[Any]:
    """Every row of one statement, as named tuples (`_prepared`). For the leases' renewal,
    which fences every turn's log write."""
    return _prepared(engine, statement, params, psycopg.Cursor.fetchall)


def _prepared(engine: Engine, statement: ClauseElement, params: dict[str, Any],
              fetch: Callable[[psycopg.Cursor], Any]) -> Any:
    """`fetch` of one statement run on the pooled psycopg connection itself, in autocommit
    (a read, or a write that commits alone: `one_statement`'s rule), as a prepared
    statement: SQLAlchemy's `Connection` and `Result` around it were about half the
    client's CPU (~160 against ~80 us a read in a loop). The statement is compiled once;
    SQLAlchemy's types do no work on the way in or out, so its parameters must be values
    psycopg adapts as they are (UUIDs and lists of them, numbers, text) and its columns
    ones psycopg returns as they are used (UUIDs, times, text, numbers, JSON). A database
    error is SQLAlchemy's, as from `Connection.execute`, and a connection that failed is
    not pooled again."""
    sql, values = _compiled(engine, statement)
    params = {**values, **params}  # the statement's own values (a literal), then the caller's
    try:
        pooled = engine.raw_connection()  # unlike Connection, the pool's errors come as psycopg's
    except psycopg.Error as error:
        raise DBAPIError.instance(sql, params, error, psycopg.Error) from error
    try:
        connection = pooled.driver_connection
        connection.autocommit = True  # a client flag: nothing is sent
        try:
            with connection.cursor(row_factory=namedtuple_row) as cursor:
                return fetch(cursor.execute(sql, params, prepare=True))
        finally:
            if not connection.closed:
                connection.autocommit = False
    except psycopg.Error as error:
        # A dead connection, or one left in autocommit, must not serve a unit of work.
        if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)) or connection.autocommit:
            pooled.invalidate(error)
        raise DBAPIError.instance(sql, params, error, psycopg.Error) from error
    finally:
        pooled.close()


_COMPILED: dict[tuple[int, str], tuple[ClauseElement, str, dict[str, Any]]] = {}


def _compiled(engine: Engine, statement: ClauseElement) -> tuple[str, dict[str, Any]]:
    """The statement's SQL for this engine's dialect, with named parameters (psycopg's
    `%(name)s`), and the values it carries itself; statements given here are module
    constants (a `select()`, a `text()`), compiled once. The cache keeps the statement
    itself, so its id cannot pass to another statement made later."""
    key = (id(statement), engine.dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        compiled = statement.compile(dialect=engine.dialect)
        found = _COMPILED[key] = (statement, str(compiled), dict(compiled.params))
    return found[1], found[2]


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
