"""Engine and unit-of-work sessions."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from psycopg import OperationalError
from psycopg.pq import ConnStatus
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    # connect_timeout keeps an outage a quick 503 instead of a hang; the checkout check
    # makes connections recover by themselves once PostgreSQL is back.
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_timeout=10, connect_args={"connect_timeout": 5}, future=True,
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
