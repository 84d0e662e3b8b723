"""SQLite for the shared SQL providers: engine set-up, transactions, error codes.

Choices (see RELIABILITY.md §5):

* **Transactions are ours, not the driver's.** Every connection is put in driver
  autocommit (``isolation_level = None``) and :meth:`SqliteDialect.begin` sends
  ``BEGIN IMMEDIATE`` for write transactions and plain ``BEGIN`` for reads, straight
  to the sqlite3 connection (:meth:`~wfe_sqlite.engine.SqliteConnection.begin_with`);
  the engine's ``begin`` event (SQLAlchemy's documented recipe for pysqlite) sends a
  ``BEGIN`` for any other transaction SQLAlchemy opens. A write transaction thus
  holds the write lock from its first statement: a read-then-write never has to
  upgrade a lock, which SQLite would refuse with an instant SQLITE_BUSY.
* **One writer per process.** A :class:`~wfe_sql.gate.PriorityGate` serialises
  this process's write transactions (lease upkeep first).
* **Connections are driven synchronously on the event loop's thread**
  (:mod:`wfe_sqlite.engine`), not through aiosqlite's thread hand-overs nor
  SQLAlchemy's greenlets, which cost far more than the SQLite calls. So no call may
  sleep in SQLite: ``busy_timeout`` is 0, and :meth:`SqliteDialect.begin` waits for
  another process's write lock with asyncio sleeps, for up to ``busy_timeout_ms``
  (30 s) before SQLITE_BUSY.
* **WAL, synchronous=NORMAL.** Readers and the writer do not block each other. With
  NORMAL a committed transaction survives a crash or ``kill -9`` of the process but
  may be lost on an OS crash or power loss; add ``?synchronous=FULL`` to the URL to
  cover those too, at the cost of an fsync per commit.
* **Database time.** Times are computed in SQL from ``julianday('now')``, which
  SQLite keeps fixed within one statement, in whole milliseconds.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.types import TypeEngine
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from wfe_core.errors import ProviderError
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import Listener
from wfe_sql.gate import PriorityGate
from wfe_sql.on_conflict import OnConflictInserts
from wfe_sqlite.engine import SqliteConnection, SqliteEngine, connector, driver_connection

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
"""How long a write transaction waits for another process's write lock before
SQLITE_BUSY (by default; tests shorten it)."""

_BUSY_FIRST_WAIT = 0.001
_BUSY_MAX_WAIT = 0.025
"""Sleeps between tries of ``BEGIN IMMEDIATE`` while another process writes: short, as
write transactions are (SQLite's own busy handler sleeps from 1 to 100 ms)."""

SYNCHRONOUS_LEVELS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

# Primary result codes after which the same operation may succeed when retried.
_TRANSIENT_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL})
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

_NOW_MS = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"


def sqlite_error_code(exc: BaseException) -> int | None:
    """The primary SQLite result code behind ``exc`` (a DBAPIError or sqlite3.Error)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _is_busy(exc: BaseException) -> bool:
    return sqlite_error_code(exc) in _BUSY_CODES


def normalize_url(url: str | URL) -> tuple[URL, str]:
    """Return the engine's URL and the ``synchronous`` level given in its query.

    ``sqlite:///path`` and ``sqlite+aiosqlite:///path`` are accepted; the engine drives
    its connections itself (:mod:`wfe_sqlite.engine`). In-memory databases are refused,
    since each pooled connection would see a different, empty database.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"not a SQLite URL: {parsed.render_as_string(hide_password=True)}")
    if parsed.get_driver_name() not in ("pysqlite", "aiosqlite"):
        raise ValueError(
            f"unsupported SQLite driver {parsed.get_driver_name()!r}; use sqlite:///path"
        )
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        raise ValueError(
            "wfe_sqlite needs a database file; use wfe_core.testing for in-memory stores"
        )
    synchronous = str(parsed.query.get("synchronous", "NORMAL")).upper()
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_LEVELS)}")
    parsed = parsed.difference_update_query(["synchronous"]).set(drivername="sqlite+pysqlite")
    return parsed, synchronous


class SqliteDialect(OnConflictInserts):
    """The SQLite half of :class:`wfe_sql.dialect.SqlDialect`."""

    name = "sqlite"
    supports_notify = False
    locks_rows = False
    writes_in_one_statement = False
    insert_construct = staticmethod(sqlite_insert)
    migration_batch_mode = True

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.url, self.synchronous = normalize_url(url)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._pool_size = pool_size
        self._max_overflow = max_overflow
        self.pool_capacity = pool_size
        self._write_gate = PriorityGate()

    def create_engine(self) -> SqliteEngine:
        """A synchronous engine whose connections get our pragmas and BEGIN handling."""
        engine = sa.create_engine(
            self.url,
            creator=connector(self.url.database or ""),
            poolclass=QueuePool,
            pool_size=self._pool_size,
            max_overflow=self._max_overflow,
            pool_timeout=0,  # never block the loop's thread (see wfe_sqlite.engine)
        )
        sa_event.listen(engine, "connect", self._on_connect)
        sa_event.listen(engine, "begin", _on_begin)
        return SqliteEngine(engine, keep=self._pool_size)

    def _on_connect(self, dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Driver autocommit (connector opens them so): the driver never emits
        # BEGIN; _on_begin does.
        assert dbapi_connection.isolation_level is None
        cursor = dbapi_connection.cursor()
        try:
            # Switching a new file to WAL waits its turn behind another process doing
            # the same (once per file, at start); nothing else may wait inside SQLite.
            cursor.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            row = cursor.fetchone()
            cursor.execute("PRAGMA busy_timeout = 0")
            mode = str(row[0]).lower() if row else "unknown"
            if mode != "wal":
                raise ProviderError(
                    f"sqlite: {self.url.database} runs in journal_mode={mode}, not WAL"
                    " (WAL is unavailable on network filesystems)"
                )
            cursor.execute(f"PRAGMA synchronous = {self.synchronous}")
        finally:
            cursor.close()

    def now_ms(self) -> sa.ColumnElement[int]:
        """``julianday('now')`` as epoch milliseconds (fixed within one statement)."""
        return sa.literal_column(_NOW_MS, type_=sa.BigInteger)

    def in_values(self, column: sa.ColumnElement[str], name: str) -> sa.ColumnElement[bool]:
        """``column IN (SELECT value FROM json_each(:name))``."""
        listed = sa.func.json_each(sa.bindparam(name, type_=sa.Text)).table_valued("value")
        return column.in_(sa.select(listed.c.value))

    def values_param(self, values: Sequence[str]) -> Any:
        return json.dumps(list(values))

    def rows_table(
        self, name: str, columns: Sequence[tuple[str, TypeEngine[Any]]]
    ) -> sa.FromClause:
        """``(SELECT json_extract(value, '$.column') AS column, ... FROM json_each(:name))``."""
        each = sa.func.json_each(sa.bindparam(name, type_=sa.Text)).table_valued("value")
        return sa.select(
            *(
                sa.type_coerce(sa.func.json_extract(each.c.value, f"$.{column}"), type_).label(
                    column
                )
                for column, type_ in columns
            )
        ).subquery(name)

    async def lock_event_keys(self, conn: SqlConnection, keys: Sequence[tuple[str, str]]) -> None:
        """Nothing to do: write transactions already run one at a time."""

    def lock_candidates(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """Nothing to lock: the write transaction already excludes other claimers."""
        return select

    def write_guard(self, *, urgent: bool = False) -> AbstractAsyncContextManager[None]:
        """The process's single-writer lock; lease upkeep jumps the queue of commits."""
        return self._write_gate.hold(urgent=urgent)

    async def begin(self, conn: SqlConnection, *, write: bool, single: bool = False) -> None:
        """``BEGIN`` for reads; ``BEGIN IMMEDIATE`` for writes, single statements too
        (so a busy lock is waited for here, with asyncio sleeps, up to
        ``busy_timeout_ms``, never inside a statement). A statement costs no round
        trip here, so ``single`` changes nothing."""
        if not isinstance(conn, SqliteConnection):
            raise TypeError(f"not a connection of a SQLite engine: {conn!r}")
        if not write:
            conn.begin_with("BEGIN")
            return
        try:
            conn.begin_with("BEGIN IMMEDIATE")  # the common case: nobody else holds the lock
            return
        except DBAPIError as exc:
            if not _is_busy(exc):
                raise
        retrying = AsyncRetrying(
            retry=retry_if_exception(_is_busy),
            stop=stop_after_delay(self.busy_timeout_ms / 1000),
            wait=wait_exponential(multiplier=_BUSY_FIRST_WAIT, max=_BUSY_MAX_WAIT)
            + wait_random(0, _BUSY_FIRST_WAIT),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                conn.begin_with("BEGIN IMMEDIATE")

    def is_transient(self, exc: DBAPIError) -> bool:
        """Busy/locked databases and lost connections are worth a retry."""
        return bool(exc.connection_invalidated) or sqlite_error_code(exc) in _TRANSIENT_CODES

    async def prepare_migration(self, conn: SqlConnection) -> None:
        """Nothing to do: the migration runs inside ``BEGIN IMMEDIATE``, one at a time."""

    async def notify_work(self, conn: SqlConnection) -> None:
        """Nothing to do: SQLite cannot notify other processes; they poll."""

    async def listen(self, wake: Callable[[], None]) -> Listener | None:
        """SQLite has no LISTEN/NOTIFY."""
        return None


def _on_begin(conn: Connection) -> None:
    # SqliteDialect.begin sends its BEGIN before SQLAlchemy's transaction opens; any
    # other transaction SQLAlchemy opens (an autobegin) gets a deferred one here, so
    # none runs its statements in SQLite's autocommit.
    if not driver_connection(conn).in_transaction:
        conn.exec_driver_sql("BEGIN")
