"""Engine and unit-of-work sessions."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    # connect_timeout keeps an outage a quick 503 instead of a hang;
    # pool_pre_ping makes connections recover by themselves once PostgreSQL is back.
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size if max_overflow is None else max_overflow,
        pool_pre_ping=True, pool_timeout=10,
        connect_args={"connect_timeout": 5}, future=True,
    )


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
