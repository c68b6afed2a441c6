"""Engine, unit-of-work sessions, and single statements outside a transaction."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import orjson
from psycopg import OperationalError
from psycopg.pq import ConnStatus
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


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
    UPDATE that is atomic by itself (a claim, a lease's renewal). psycopg otherwise opens a
    transaction before the first statement (a `BEGIN`, a round trip of its own) and it is
    committed or rolled back after (another); one statement sees one snapshot and commits
    alone either way, so this is one round trip instead of three. Autocommit is a flag of
    the client (nothing is sent to set it), put back when the pool takes the connection
    back. Never for statements that must commit together."""
    with engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


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
