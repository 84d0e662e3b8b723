"""What the shared SQL code asks a database dialect (SQLite, PostgreSQL).

The providers in :mod:`wfe_sql` are written once against SQLAlchemy Core. Everything
that differs between databases is a method or capability of a :class:`SqlDialect`,
so shared code never tests a URL or a dialect name.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy import ColumnElement, FromClause, Insert, Select, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from wfe_sql.connection import SqlConnection, SqlEngine


def rows_param(rows: Sequence[Mapping[str, Any]]) -> str:
    """The parameter value of :meth:`SqlDialect.rows_table` for these rows (flags as
    0/1: both databases read JSON numbers into integer columns)."""
    return json.dumps(list(rows), separators=(",", ":"))


class Listener(Protocol):
    """A running notification listener (LISTEN/NOTIFY); ``close()`` stops it."""

    async def close(self) -> None: ...


class SqlDialect(Protocol):
    """The database-specific part of the SQL providers."""

    name: str
    """Short name for messages and logs (``"sqlite"``, ``"postgresql"``)."""

    supports_notify: bool
    """True when work made due by another process wakes this one (LISTEN/NOTIFY)."""

    locks_rows: bool
    """True when concurrent writers lock single rows (PostgreSQL), so a statement that
    writes many must lock them in a fixed order; False when a write transaction
    excludes every other (SQLite)."""

    writes_in_one_statement: bool
    """True when one statement can write several tables (PostgreSQL's data-modifying
    CTEs), so a run of plain step commits can go as one statement with no transaction
    (see :func:`wfe_sql.plain_commits.apply_plain_commits_at_once`)."""

    migration_batch_mode: bool
    """True when Alembic must rebuild tables to alter them (``render_as_batch``)."""

    pool_capacity: int
    """How many transactions may hold a connection at once; more wait their turn in
    :class:`wfe_sql.database.Database`. The pool's size: overflow connections are
    closed when handed back, and reopening them under a steady load costs more (a
    thread and the pragmas per SQLite connection, a login per PostgreSQL one) than
    waiting for a pooled one."""

    def create_engine(self) -> SqlEngine:
        """Build the engine with its connection set-up (pragmas, session settings):
        an ``AsyncEngine`` where the driver is asynchronous, or one whose connections
        are called directly (see :mod:`wfe_sql.connection`)."""
        ...

    def now_ms(self) -> ColumnElement[int]:
        """An SQL expression for the database clock in epoch milliseconds."""
        ...

    def in_values(self, column: ColumnElement[str], name: str) -> ColumnElement[bool]:
        """``column IN (the values bound to name)``, the values sent as one parameter
        (an array, a JSON list; see :meth:`values_param`), so the statement is built
        and compiled once whatever the number of values."""
        ...

    def values_param(self, values: Sequence[str]) -> Any:
        """The parameter value of :meth:`in_values` for these values."""
        ...

    def rows_table(self, name: str, columns: Sequence[tuple[str, TypeEngine[Any]]]) -> FromClause:
        """A table named ``name`` with these typed columns whose rows are bound to the
        parameter ``name`` as one JSON array of objects (see :func:`rows_param`), so a
        statement that joins it writes many rows, each with its own values, at once."""
        ...

    def insert_ignore(self, table: Table, values: Mapping[str, Any]) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` (any unique constraint)."""
        ...

    def upsert(
        self,
        table: Table,
        values: Mapping[str, Any],
        conflict_columns: Sequence[str],
        update: Mapping[str, Any],
        where: ColumnElement[bool] | None = None,
    ) -> Insert:
        """``INSERT ... ON CONFLICT (cols) DO UPDATE SET ... [WHERE ...]``."""
        ...

    async def lock_event_keys(self, conn: SqlConnection, keys: Sequence[tuple[str, str]]) -> None:
        """Serialise, until ``conn``'s transaction ends, every writer of these
        ``(event name, key)`` pairs (a publish, a commit adding a subscription).

        Each of the two must see the other's row, or neither wakes the workflow; where
        write transactions are serialised anyway (SQLite) this does nothing. Taken
        before any other lock of the transaction, in a fixed order, so that it cannot
        deadlock.
        """
        ...

    def lock_candidates(self, select: Select[Any]) -> Select[Any]:
        """Lock the rows a claim picks so concurrent claimers skip them (SKIP LOCKED)."""
        ...

    def write_guard(self, *, urgent: bool = False) -> AbstractAsyncContextManager[object]:
        """Held around every write transaction of this process (one writer on SQLite).

        ``urgent`` writers (lease renewals and releases) go before waiting ordinary ones.
        """
        ...

    async def begin(self, conn: SqlConnection, *, write: bool, single: bool = False) -> None:
        """Start a transaction on ``conn``: a write one takes the write lock up front.

        ``single``: the work is one statement (a write atomic by itself, or a read
        that is its own snapshot); a dialect may then send no BEGIN and COMMIT
        (autocommit: one round trip rather than three).
        """
        ...

    def is_transient(self, exc: DBAPIError) -> bool:
        """Whether retrying the operation may succeed (busy, lock timeout, lost link)."""
        ...

    async def prepare_migration(self, conn: SqlConnection) -> None:
        """Serialise concurrent migrators inside the migration transaction."""
        ...

    async def notify_work(self, conn: SqlConnection) -> None:
        """Tell other processes, on commit of ``conn``'s transaction, that work is due."""
        ...

    async def listen(self, wake: Callable[[], None]) -> Listener | None:
        """Call ``wake`` whenever another process notifies; ``None`` if unsupported."""
        ...
