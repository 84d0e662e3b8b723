"""PostgreSQL for the shared SQL providers: engine set-up, claim locking, LISTEN/NOTIFY,
SQLSTATE classification, the migration lock.

Choices (see RELIABILITY.md §2, §9):

* **Session settings on every connection** (pool and listener alike):
  ``idle_in_transaction_session_timeout`` (10 s by default, below any sensible lease)
  so that a paused or partitioned host cannot hold row locks for long,
  ``statement_timeout`` (30 s) and ``application_name`` ``wfe:<host>:<pid>`` (so an
  operator, or a test, can find and kill one host's connections). Each can be set in
  the URL's query, as can the pool's sizing.
* **Claims** lock their candidate rows ``FOR UPDATE SKIP LOCKED``: concurrent hosts
  split the due work instead of queueing behind each other.
* **Transactions**: writes run in READ COMMITTED; reads in REPEATABLE READ, READ ONLY
  (one snapshot, like SQLite's, at no cost: read-only snapshots never conflict).
  Where READ COMMITTED could let two writers miss each other's uncommitted rows (a
  publish and a commit adding a matching subscription), :meth:`lock_event_keys` takes
  a transaction-scoped advisory lock per (event name, key).
* **Database time** is ``statement_timestamp()``: fixed within a statement, as
  SQLite's ``julianday('now')`` is, and stable, so that the claim query's comparison
  with it can use the due index.
* **Wake-ups**: ``pg_notify`` inside the committing transaction (delivered on commit,
  so a woken host never looks before the rows are visible), received by a supervised
  LISTEN connection outside the pool (:mod:`wfe_postgres.listener`).
* **Errors** are classified by SQLSTATE, never by message text.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.types import TypeEngine

from wfe_postgres.engine import PostgresEngine
from wfe_postgres.listener import PostgresListener
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import Listener
from wfe_sql.on_conflict import OnConflictInserts

logger = logging.getLogger(__name__)

CHANNEL = "wfe_work"
"""The NOTIFY channel on which hosts announce work that became due."""

MIGRATION_LOCK = int.from_bytes(b"wfe-migr", "big")
"""The transaction advisory lock key that serialises migrators."""

_NOW_MS = "CAST(floor(extract(epoch FROM statement_timestamp()) * 1000) AS BIGINT)"

# Worth retrying: the whole class 08 (connection exceptions) plus these.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "53300",  # too_many_connections
        "57P01",  # admin_shutdown (pg_terminate_backend, fast shutdown)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, in recovery)
        "25P03",  # idle_in_transaction_session_timeout (our session was ended)
    }
)

_NOTIFY = sa.text("SELECT pg_notify(:channel, :sender)")

_LOCK_EVENT_KEYS = sa.text(
    "SELECT pg_advisory_xact_lock(h) FROM ("
    " SELECT DISTINCT hashtextextended(length(n) || ':' || n || k, 0) AS h"
    " FROM unnest(CAST(:names AS text[]), CAST(:keys AS text[])) AS t(n, k)"
    " ORDER BY h) AS ordered"
)
"""One advisory lock per (name, key), in hash order (the same order for everyone); the
length prefix keeps ("ab", "c") and ("a", "bc") apart."""

_GUCS = (
    "application_name",
    "idle_in_transaction_session_timeout",
    "statement_timeout",
    "plan_cache_mode",
)
_OPTIONAL_GUCS = ("lock_timeout",)


def _default_application_name() -> str:
    return f"wfe:{socket.gethostname()}:{os.getpid()}"[:63]


def _flag(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise ValueError(f"not a boolean: {value!r}")
    return lowered in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class PostgresOptions:
    """Connection and pool settings, each settable in the URL's query string.

    Durations of session settings take PostgreSQL's units (``10s``, ``500ms``); pool
    and connect times are seconds.
    """

    application_name: str = field(default_factory=_default_application_name)
    idle_in_transaction_session_timeout: str = "10s"
    statement_timeout: str = "30s"
    # Prepared statements are planned for their parameters each time: a generic plan
    # cached while a table was small (a seq scan and a sort) would stay for the life
    # of the connection as the table grows, and make claims and loads O(table).
    plan_cache_mode: str = "force_custom_plan"
    lock_timeout: str | None = None
    pool_size: int = 10
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: float = 1800.0
    pool_pre_ping: bool = False
    connect_timeout: float = 10.0
    listen: bool = True
    """LISTEN for other hosts' notifications (off: learn of their work by polling)."""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> PostgresOptions:
        """Options from a URL query (only the keys that are options' names)."""
        values: dict[str, Any] = {}
        for option in fields(cls):
            if option.name not in query:
                continue
            raw = query[option.name]
            if option.name in ("pool_size", "max_overflow"):
                values[option.name] = int(raw)
            elif option.name in ("pool_timeout", "pool_recycle", "connect_timeout"):
                values[option.name] = float(raw)
            elif option.name in ("pool_pre_ping", "listen"):
                values[option.name] = _flag(raw)
            else:
                values[option.name] = raw
        return cls(**values)

    def server_settings(self) -> dict[str, str]:
        """The session settings every connection starts with."""
        settings = {name: str(getattr(self, name)) for name in _GUCS}
        settings.update({n: str(v) for n in _OPTIONAL_GUCS if (v := getattr(self, n)) is not None})
        return settings


def normalize_url(url: str | URL) -> tuple[URL, PostgresOptions]:
    """Return the asyncpg URL, without wfe's options, and those options.

    ``postgresql://``, ``postgres://`` and ``postgresql+asyncpg://`` are accepted.

    Raises:
        ValueError: not a PostgreSQL URL, another driver, or a malformed option.
    """
    parsed = make_url(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)}")
    if driver not in ("", "asyncpg"):
        raise ValueError(f"unsupported PostgreSQL driver {driver!r}; use asyncpg")
    query = {k: v for k, v in parsed.query.items() if isinstance(v, str)}
    options = PostgresOptions.from_query(query)
    own = [option.name for option in fields(PostgresOptions) if option.name in parsed.query]
    parsed = parsed.difference_update_query(own).set(drivername="postgresql+asyncpg")
    unknown = sorted(set(parsed.query) - _driver_options())
    if unknown:
        raise ValueError(
            f"unknown PostgreSQL URL option(s) {unknown}: wfe takes "
            f"{[option.name for option in fields(PostgresOptions)]}, asyncpg takes "
            f"{sorted(_driver_options())}"
        )
    return parsed, options


def _driver_options() -> set[str]:
    """Query keys the engine hands on to ``asyncpg.connect`` (and SQLAlchemy's adapter)."""
    taken = set(inspect.signature(asyncpg.connect).parameters) | {"prepared_statement_cache_size"}
    # Ours: server_settings from the options, timeout from connect_timeout.
    return taken - {"dsn", "loop", "connection_class", "record_class", "server_settings", "timeout"}


class PostgresDialect(OnConflictInserts):
    """The PostgreSQL half of :class:`wfe_sql.dialect.SqlDialect`."""

    name = "postgresql"
    locks_rows = True
    writes_in_one_statement = True
    migration_batch_mode = False
    insert_construct = staticmethod(pg_insert)

    def __init__(self, url: str | URL) -> None:
        self.url, self.options = normalize_url(url)
        self.supports_notify = self.options.listen
        self.pool_capacity = self.options.pool_size
        # Sent as the payload of our notifications: our own listener ignores them, as
        # the providers wake this process directly after each notifying commit.
        self._sender = uuid.uuid4().hex

    def _connect_args(self) -> dict[str, Any]:
        return {
            "server_settings": self.options.server_settings(),
            "timeout": self.options.connect_timeout,
        }

    def create_engine(self) -> PostgresEngine:
        """An asyncpg engine whose connections carry our session settings and run
        statements on asyncpg directly (see :mod:`wfe_postgres.engine`)."""
        options = self.options
        engine = create_async_engine(
            self.url,
            pool_size=options.pool_size,
            max_overflow=options.max_overflow,
            pool_timeout=options.pool_timeout,
            pool_recycle=options.pool_recycle,
            pool_pre_ping=options.pool_pre_ping,
            connect_args=self._connect_args(),
        )
        sa_event.listen(engine.sync_engine, "checkout", _refuse_closed)
        return PostgresEngine(engine)

    async def connect_listener(self) -> asyncpg.Connection:
        """A new asyncpg connection outside the pool, with the pool's settings."""
        _, params = self.url.get_dialect()().create_connect_args(self.url)
        for adapter_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
            params.pop(adapter_only, None)
        params.update(self._connect_args())
        return await asyncpg.connect(**params)

    def now_ms(self) -> sa.ColumnElement[int]:
        """``statement_timestamp()`` as epoch milliseconds (fixed within one statement)."""
        return sa.literal_column(_NOW_MS, type_=sa.BigInteger)

    def in_values(self, column: sa.ColumnElement[str], name: str) -> sa.ColumnElement[bool]:
        """``column = ANY(:name)`` (a text array)."""
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(sa.Text)))

    def values_param(self, values: Sequence[str]) -> Any:
        return list(values)

    def rows_table(
        self, name: str, columns: Sequence[tuple[str, TypeEngine[Any]]]
    ) -> sa.FromClause:
        """``jsonb_to_recordset(:name) AS name(column type, ...)``."""
        return (
            sa.func.jsonb_to_recordset(sa.cast(sa.bindparam(name, type_=sa.Text), JSONB))
            .table_valued(*(sa.column(column, type_) for column, type_ in columns))
            .render_derived(name=name, with_types=True)
        )

    async def lock_event_keys(self, conn: SqlConnection, keys: Sequence[tuple[str, str]]) -> None:
        """``pg_advisory_xact_lock`` per (event name, key), released at commit."""
        if keys:
            names, event_keys = zip(*keys, strict=True)
            await conn.execute(_LOCK_EVENT_KEYS, {"names": list(names), "keys": list(event_keys)})

    def lock_candidates(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """``FOR UPDATE SKIP LOCKED``: rows another claimer is taking are passed over."""
        return select.with_for_update(skip_locked=True)

    def write_guard(self, *, urgent: bool = False) -> AbstractAsyncContextManager[None]:
        """Nothing to hold: PostgreSQL runs write transactions concurrently."""
        return contextlib.nullcontext()

    async def begin(self, conn: SqlConnection, *, write: bool, single: bool = False) -> None:
        """READ COMMITTED for writes; REPEATABLE READ, READ ONLY for reads; autocommit
        for a single statement (a transaction, and a snapshot, of its own)."""
        if single:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        elif not write:
            await conn.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
        await conn.begin()

    def is_transient(self, exc: DBAPIError) -> bool:
        """Lost connections (class 08, or the driver saw the link close), shutdowns,
        serialization failures, deadlocks, lock timeouts, too many connections."""
        if exc.connection_invalidated:
            return True
        state = postgres_sqlstate(exc)
        return state is not None and (state.startswith("08") or state in _TRANSIENT_SQLSTATES)

    async def prepare_migration(self, conn: SqlConnection) -> None:
        """Take the migration lock for this transaction; no time limit on migrating."""
        await conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))

    async def notify_work(self, conn: SqlConnection) -> None:
        """``pg_notify`` in the transaction: delivered to listeners when it commits."""
        await conn.execute(_NOTIFY, {"channel": CHANNEL, "sender": self._sender})

    async def listen(self, wake: Callable[[], None]) -> Listener | None:
        """Start the supervised LISTEN connection (see :mod:`wfe_postgres.listener`)."""
        listener = PostgresListener(self.connect_listener, CHANNEL, wake, ignore=self._sender)
        await listener.start()
        return listener


def postgres_sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE behind ``exc`` (a DBAPIError or an asyncpg error), if it has one."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    state = getattr(orig, "sqlstate", None)
    return state if isinstance(state, str) else None


def _refuse_closed(
    dbapi_connection: DBAPIConnection,
    _record: ConnectionPoolEntry,
    _proxy: PoolProxiedConnection,
) -> None:
    # asyncpg marks a connection closed as soon as the server drops it (a terminated
    # backend, a restart): the pool replaces it instead of handing it out, without
    # the round trip of pool_pre_ping.
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("connection closed by the server")
