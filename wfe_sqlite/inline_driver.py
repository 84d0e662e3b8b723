"""SQLite connections driven on the event loop's own thread, behind aiosqlite's interface.

aiosqlite runs each connection in a thread of its own and hands every call over through
a queue: cursor, execute and fetch are each a round trip between threads, and under a
busy event loop each one costs hundreds of microseconds, while the SQLite call itself
(a local file, WAL, no fsync at commit) takes a few. The engine's transactions are many
and short, so those hand-overs were most of its time. These connections make the same
calls directly: SQLAlchemy's aiosqlite adapter awaits coroutines that complete at once.

What keeps the event loop from stalling on a call:

* ``busy_timeout`` is 0 on these connections: a statement never sleeps in SQLite
  waiting for another process's lock; it fails at once with SQLITE_BUSY, and the
  dialect retries ``BEGIN IMMEDIATE`` with asyncio sleeps up to its own busy timeout
  (:meth:`wfe_sqlite.dialect.SqliteDialect.begin`); any other busy statement fails its
  transaction, which the retry seam runs again.
* Write transactions take the write lock at ``BEGIN IMMEDIATE``, and WAL readers never
  wait for writers, so no statement after that point waits for a lock.
* Statements are short by design (claims, commits, batched reads and purges); the one
  long call is a checkpoint, which SQLite runs inside the COMMIT that fills the WAL
  past ``wal_autocheckpoint`` pages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any


class InlineCursor:
    """An aiosqlite-like cursor whose coroutines run the sqlite3 call directly."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorOpening:
    """What ``Connection.cursor()`` returns: entered with ``async with``/``__aenter__``."""

    __slots__ = ("_connection",)

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def __aenter__(self) -> InlineCursor:
        return InlineCursor(self._connection.cursor())

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class InlineConnection:
    """An aiosqlite-like connection over a sqlite3 connection used on the loop thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn: sqlite3.Connection | None = connection

    @property
    def _connection(self) -> sqlite3.Connection | None:
        # SQLAlchemy's adapter checks it before rollback and commit, as aiosqlite's.
        return self._conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("Connection closed")
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._open().isolation_level

    def cursor(self) -> _CursorOpening:
        return _CursorOpening(self._open())

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        return await InlineCursor(self._open().cursor()).execute(sql, parameters)

    async def commit(self) -> None:
        self._open().commit()

    async def rollback(self) -> None:
        self._open().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._open().create_function(*args, **kwargs)

    async def close(self) -> None:
        connection, self._conn = self._conn, None
        if connection is not None:
            connection.close()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate)."""
        connection, self._conn = self._conn, None
        if connection is not None:
            connection.close()


def inline_connector(path: str) -> Any:
    """An ``async_creator`` for ``create_async_engine``: opens ``path`` in autocommit
    mode (the dialect emits BEGIN itself) with no busy wait inside SQLite."""

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=0.0
        )
        return InlineConnection(connection)

    return connect
