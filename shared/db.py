"""Engine, unit-of-work sessions, and single statements outside a transaction."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import orjson
import psycopg
from psycopg import OperationalError
from psycopg.pq import ConnStatus
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, create_engine, event
from sqlalchemy.engine import Connection, Dialect, Engine
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
    """The first row of one statement, as a named tuple, or None (`prepared`). For the
    reads of every request (the key's owner, a long-poll's job) and a worker's claim."""
    with prepared(engine, autocommit=True) as run:
        return run(statement, params).fetchone()


def all_rows(engine: Engine, statement: ClauseElement, params: dict[str, Any]) -> list[Any]:
    """Every row of one statement, as named tuples (`prepared`). For the leases' renewal,
    which fences every turn's log write."""
    with prepared(engine, autocommit=True) as run:
        return run(statement, params).fetchall()


Run = Callable[[ClauseElement, dict[str, Any]], psycopg.Cursor]


@contextmanager
def prepared(engine: Engine, autocommit: bool = False) -> Iterator[Run]:
    """`run(statement, params)` of statements on the pooled psycopg connection itself, as
    prepared statements, returning the cursor (rows as named tuples). In autocommit for
    a statement that commits alone (`one_statement`'s rule); otherwise the statements are
    one transaction, committed when the block ends and rolled back if it raises.

    SQLAlchemy's `Connection` and `Result` around a statement were half or more of the
    client's CPU (a read: ~160 against ~80 us in a loop; a claim returning a
    conversation: ~1,250 against ~640 us). Each statement is compiled once; SQLAlchemy's
    types do no work on the way, except JSON parameters (sent as JSONB, as the column
    types say: `_json_value`), so the other parameters must be values psycopg adapts as
    they are (UUIDs and lists of them, numbers, Decimals, text) and the columns ones
    psycopg returns as they are used (UUIDs, times, text, numbers, JSON). A database
    error is SQLAlchemy's, as from `Connection.execute`, and a connection that failed is
    not pooled again."""
    try:
        pooled = engine.raw_connection()  # unlike Connection, the pool's errors come as psycopg's
    except psycopg.Error as error:
        raise DBAPIError.instance("(connect)", {}, error, psycopg.Error) from error
    connection = pooled.driver_connection
    try:
        connection.autocommit = autocommit  # a client flag: nothing is sent
        with connection.cursor(row_factory=namedtuple_row) as cursor:
            yield _runner(engine.dialect, cursor)
        if not autocommit:
            connection.commit()
    except BaseException as error:
        _put_back(pooled, connection, error.orig if isinstance(error, DBAPIError) else error)
        if isinstance(error, psycopg.Error):  # the transaction's own (its COMMIT), not a statement's
            raise DBAPIError.instance("COMMIT", {}, error, psycopg.Error) from error
        raise
    finally:
        try:
            if not connection.closed:
                connection.autocommit = False  # as the pool's other users expect it
        except psycopg.Error as error:  # its state is unknown: not pooled again
            pooled.invalidate(error)
        pooled.close()


def in_session(session: Session) -> Run:
    """`prepared`'s `run`, in the session's transaction (begun now if it was not): for a
    unit of work that also uses the ORM. Pending ORM changes are not flushed first. A
    database error is SQLAlchemy's; after one, the caller rolls the session back (a
    connection that died is not pooled again)."""
    connection = session.connection()
    cursor = connection.connection.driver_connection.cursor(row_factory=namedtuple_row)
    return _runner(connection.dialect, cursor, on_lost=connection.invalidate)


def _runner(dialect: Dialect, cursor: psycopg.Cursor, on_lost: Callable[[Exception], None] | None = None) -> Run:
    """`run(statement, params)` on this cursor; a database error comes as SQLAlchemy's
    (`on_lost(error)` first if the connection died)."""
    def run(statement: ClauseElement, params: dict[str, Any]) -> psycopg.Cursor:
        sql, values, json = _compiled(dialect, statement)
        params = {**values, **params}  # the statement's own values (a literal), then the caller's
        for name, none_as_null in json.items():
            params[name] = _json_value(params.get(name), none_as_null)
        try:
            return cursor.execute(sql, params, prepare=True)
        except psycopg.Error as error:
            if on_lost is not None and _lost(error):
                on_lost(error)
            raise DBAPIError.instance(sql, {}, error, psycopg.Error) from error

    return run


def _lost(error: BaseException) -> bool:
    """The connection under the error is gone or unusable."""
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


def _put_back(pooled, connection: psycopg.Connection, error: BaseException) -> None:
    """After a failure: the transaction rolled back; a dead connection, or one whose state
    is unknown, is not pooled again."""
    if _lost(error) or connection.closed:
        pooled.invalidate(error)
        return
    try:
        connection.rollback()
    except psycopg.Error as lost:
        pooled.invalidate(lost)


def _json_value(value: Any, none_as_null: bool) -> Any:
    """A JSON parameter as SQLAlchemy's JSON type sends it: None is SQL NULL only for a
    column that says so (none_as_null), else JSON `null`."""
    if value is None and none_as_null:
        return None
    return Jsonb(value, dumps=orjson.dumps)


_COMPILED: dict[tuple[int, str], tuple[ClauseElement, str, dict[str, Any], dict[str, bool]]] = {}


def _compiled(dialect: Dialect, statement: ClauseElement) -> tuple[str, dict[str, Any], dict[str, bool]]:
    """The statement's SQL for this engine's dialect, with named parameters (psycopg's
    `%(name)s`), the values it carries itself, and its JSON parameters (with whether None
    is SQL NULL for each); statements given here are module constants (a `select()`, a
    `text()`), compiled once. The cache keeps the statement itself, so its id cannot pass
    to another statement made later."""
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        json = {name: bind.type.none_as_null for name, bind in compiled.binds.items()
                if isinstance(bind.type, JSON)}
        found = _COMPILED[key] = (statement, str(compiled), dict(compiled.params), json)
    return found[1], found[2], found[3]


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def reading(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session for reads, whose transaction ends with COMMIT (ROLLBACK on an error). A
    plain session ends with ROLLBACK, and at every rollback psycopg deallocates all the
    statements prepared on that connection (a rollback may have undone the DDL they were
    planned against), so the pool's next user of it sent DEALLOCATE ALL and prepared each
    of its statements again, a round trip each."""
    with sessions() as session:
        yield session
        session.commit()


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
