"""SQLite connections driven synchronously on the event loop's thread.

A transaction's SQL is shared with PostgreSQL and written as coroutines
(:class:`wfe_sql.connection.SqlConnection`), but a SQLite call on a local file takes
microseconds. Driving it through SQLAlchemy's async adaptation (a greenlet switch
into and out of each call) or through aiosqlite's thread (a queue hand-over per call)
costs far more than the call, and the engine's transactions are many and short. So
:class:`SqliteConnection` wraps a plain synchronous SQLAlchemy connection (the
pysqlite dialect, over connections we open ourselves) in coroutines that call it
directly and complete at once.

What keeps the event loop from stalling on a call:

* ``busy_timeout`` is 0 on these connections: a statement never sleeps in SQLite
  waiting for another process's lock; it fails at once with SQLITE_BUSY, and the
  dialect retries ``BEGIN IMMEDIATE`` with asyncio sleeps up to its own busy timeout
  (:meth:`wfe_sqlite.dialect.SqliteDialect.begin`); any other busy statement fails its
  transaction, which the retry seam runs again.
* Write transactions take the write lock at ``BEGIN IMMEDIATE``, and WAL readers never
  wait for writers, so no statement after that point waits for a lock.
* The pool's checkout never waits (``pool_timeout`` 0): the database's connection
  gate admits no more transactions than the pool holds, and a checkout beyond it
  would block the thread, so it fails instead. Most transactions make no checkout
  at all: :class:`SqliteEngine` keeps the connections that transactions hand back.
* Statements are short by design (claims, commits, batched reads and purges); the one
  long call is a checkpoint, which SQLite runs inside the COMMIT that fills the WAL
  past ``wal_autocheckpoint`` pages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

from wfe_sql.connection import AnyResult, Parameters, SqlConnection, SqlEngine

P = ParamSpec("P")
T = TypeVar("T")


class BufferedCursor(sqlite3.Cursor):
    """A cursor that steps each statement to its end when it is executed.

    As with the async drivers, which fetch every row before ``execute`` returns: the
    statement is finished at once, so ``rowcount`` counts an ``UPDATE ... RETURNING``'s
    rows before they are read, and no half-read statement is left running when the
    transaction commits (SQLite refuses to COMMIT with a write statement in progress).
    """

    _rows: list[Any] = []
    _next = 0

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        super().execute(sql, parameters)
        self._rows = super().fetchall() if self.description is not None else []
        self._next = 0
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Self:
        super().executemany(sql, seq_of_parameters)
        self._rows, self._next = [], 0
        return self

    def fetchone(self) -> Any:
        position = self._next
        if position >= len(self._rows):
            return None
        self._next = position + 1
        return self._rows[position]

    def fetchmany(self, size: int | None = None) -> list[Any]:
        position = self._next
        end = position + (self.arraysize if size is None else size)
        self._next = min(end, len(self._rows))
        return self._rows[position:end]

    def fetchall(self) -> list[Any]:
        rows = self._rows[self._next :] if self._next else self._rows
        self._rows, self._next = [], 0
        return rows

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row


class _Connection(sqlite3.Connection):
    """A sqlite3 connection whose cursors are :class:`BufferedCursor`."""

    def cursor(self, factory: Any = BufferedCursor) -> Any:
        return super().cursor(factory)


def connector(path: str) -> Callable[[], sqlite3.Connection]:
    """The engine's ``creator``: opens ``path`` in driver autocommit (the dialect emits
    BEGIN itself) with no busy wait inside SQLite."""

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=0.0, factory=_Connection
        )

    return connect


class SqliteConnection(SqlConnection):
    """A synchronous connection behind coroutines that call it directly."""

    def __init__(self, connection: Connection, engine: SqliteEngine) -> None:
        self.sync_connection = connection
        self._dbapi = driver_connection(connection)
        self._engine = engine
        self._options = connection.get_execution_options()
        self.generation = engine.generation
        """The engine's generation when this was checked out (see ``dispose``)."""
        self.lent = True
        """Lent to a transaction, rather than kept idle by the engine."""

    async def execute(
        self, statement: Executable, parameters: Parameters | None = None
    ) -> AnyResult:
        return self.sync_connection.execute(statement, parameters)

    async def exec_driver_sql(
        self, statement: str, parameters: Parameters | None = None
    ) -> AnyResult:
        return self.sync_connection.exec_driver_sql(statement, parameters)

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return fn(self.sync_connection, *args, **kwargs)

    async def execution_options(self, **options: Any) -> Self:
        self.sync_connection.execution_options(**options)
        return self

    async def begin(self) -> None:
        """Start a deferred transaction (``BEGIN``): see :meth:`begin_with`."""
        self.begin_with("BEGIN")

    def begin_with(self, statement: str) -> None:
        """Start a transaction with ``statement``: ``BEGIN`` or ``BEGIN IMMEDIATE``.

        The statement goes straight to the sqlite3 connection: sent through
        SQLAlchemy's ``exec_driver_sql`` (a statement context, a cursor and a result
        for a statement that returns nothing) it cost several times what SQLite
        takes to run it. SQLAlchemy's own transaction is opened after it and sends
        nothing (the connection is in driver autocommit, where pysqlite's
        ``do_begin`` does nothing), so ``in_transaction``, ``commit`` and
        ``rollback`` work as for any transaction, its COMMIT or ROLLBACK going
        through SQLAlchemy. A BEGIN that fails leaves no transaction open on either
        side and raises the DBAPIError that SQLAlchemy would have raised, so busy
        handling classifies it as before.
        """
        try:
            self._dbapi.execute(statement)
        except sqlite3.Error as exc:
            raise self._translate(exc, statement) from exc
        try:
            self.sync_connection.begin()
        except BaseException:
            self._dbapi.rollback()  # SQLite's transaction must not outlive SQLAlchemy's
            raise

    def _translate(self, exc: sqlite3.Error, statement: str) -> DBAPIError:
        """``exc`` wrapped as SQLAlchemy wraps a failed statement's error (a closed
        database invalidates the connection, as SQLAlchemy would)."""
        connection = self.sync_connection
        error: Any = exc  # SQLAlchemy types it as its DBAPI protocol's Error
        lost = connection.dialect.is_disconnect(error, connection.connection, None)
        if lost:
            connection.invalidate(exc)
        wrapped = DBAPIError.instance(
            statement,
            None,
            exc,
            sqlite3.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        )
        assert isinstance(wrapped, DBAPIError)  # what it makes of a sqlite3.Error
        return wrapped

    async def commit(self) -> None:
        self.sync_connection.commit()

    async def rollback(self) -> None:
        self.sync_connection.rollback()

    def in_transaction(self) -> bool:
        return self.sync_connection.in_transaction()

    async def invalidate(self) -> None:
        self.sync_connection.invalidate()

    async def close(self) -> None:
        """Hand the connection back to its engine, which keeps it or returns it to the
        pool (see :class:`SqliteEngine`); a second call does nothing."""
        if self.lent:
            self.lent = False
            self._engine.take_back(self)

    def reusable(self) -> bool:
        """Whether this is as a fresh checkout from the pool would be: valid, outside
        any transaction (SQLAlchemy's, or SQLite's, which the pool's reset would roll
        back), with no execution options of its own."""
        connection = self.sync_connection
        return (
            not connection.closed
            and not connection.invalidated
            and connection.get_transaction() is None
            and connection.get_execution_options() is self._options
            and not self._dbapi.in_transaction
        )


def driver_connection(connection: Connection) -> sqlite3.Connection:
    """The sqlite3 connection under a SQLAlchemy connection of these engines."""
    return cast(sqlite3.Connection, connection.connection.dbapi_connection)


class SqliteEngine(SqlEngine):
    """A synchronous engine whose connections are :class:`SqliteConnection`.

    A connection that a transaction hands back is not returned to SQLAlchemy's pool
    but kept, still checked out, for the next transaction: a checkout and a return
    (the pool's queue and locks, a new SQLAlchemy connection, the reset on return)
    cost about as much as a short transaction's SQL. Only a connection that is as a
    fresh checkout would be is kept (:meth:`SqliteConnection.reusable`); any other
    goes back to the pool, whose reset rolls it back, or has been invalidated. The
    last one handed back is lent first, so a lone workflow's transactions all use
    one connection, while concurrent ones still get one each (WAL readers beside
    the writer), never more than ``keep`` (the pool's size) kept at once.
    """

    def __init__(self, engine: Engine, *, keep: int) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[SqliteConnection] = []
        self.generation = 0
        """Counts :meth:`dispose` calls: a connection checked out before the last one
        is not kept when handed back."""

    @property
    def sync_engine(self) -> Engine:
        return self._engine

    @property
    def idle(self) -> int:
        """How many connections are kept, checked out of the pool, for no transaction."""
        return len(self._idle)

    async def connect(self) -> SqliteConnection:
        if self._idle:
            conn = self._idle.pop()
            conn.lent = True
            return conn
        return SqliteConnection(self._engine.connect(), self)

    def take_back(self, conn: SqliteConnection) -> None:
        """Keep ``conn`` for the next transaction, or return it to the pool."""
        if conn.generation != self.generation:
            # Its pool was disposed of while a transaction had it: returned there, it
            # would stay open until collected, so close it now.
            conn.sync_connection.invalidate()
            conn.sync_connection.close()
        elif len(self._idle) < self._keep and conn.reusable():
            self._idle.append(conn)
        else:
            conn.sync_connection.close()

    async def dispose(self) -> None:
        """Close every pooled connection, the kept ones too, and one lent to a
        transaction meanwhile when the transaction hands it back."""
        self.generation += 1
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.sync_connection.close()
        self._engine.dispose()
