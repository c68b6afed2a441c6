"""A connection for a read that is one statement: outside a transaction, one round trip.

psycopg opens a transaction before a connection's first statement (a `BEGIN`, a round
trip of its own) and the pool rolls it back when the connection goes back (another).
A read of one `SELECT` needs neither: in autocommit it is still one statement seeing one
snapshot. So the reads made for every request (the key lookup, a long-poll's job, the
open streams' checks) take one round trip instead of three, and PostgreSQL parses two
statements fewer. Autocommit is a client-side flag here (no statement is sent to set or
reset it); the pool puts it back when the connection is returned.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.engine import Connection, Engine


@contextmanager
def one_statement(engine: Engine) -> Iterator[Connection]:
    """A pooled connection in autocommit, for a single read (never for writes that must
    commit together)."""
    with engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")
