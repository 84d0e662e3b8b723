"""Fixtures of the SQL-provider tests.

Tests of behaviour every SQL database must have take ``sql_url`` (an empty, unmigrated
database) or ``sql_backend`` (a migrated backend) and run once per selected SQL backend
(``[sqlite]``, ``[postgres]``); SQLite-only tests take ``db_url`` / ``sqlite_backend``
(real files in ``tmp_path``), PostgreSQL-only ones ``pg_url`` / ``pg_backend``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, cast

import pytest

from wfe.backends import open_backend as open_by_url
from wfe_core.ports.backend import Backend
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database
from wfe_sql.provider import SqlPersistence
from wfe_sqlite import open_backend


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database file lives (not created yet)."""
    return tmp_path / "wfe.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    """The aiosqlite URL of the test's database file."""
    return f"sqlite+aiosqlite:///{db_path}"


@pytest.fixture
async def sqlite_backend(db_url: str) -> AsyncIterator[Backend]:
    """A migrated SQLite backend on a fresh file, closed after the test."""
    backend = open_backend(db_url)
    try:
        await backend.persistence.migrate()
        yield backend
    finally:
        await backend.close()


@contextlib.asynccontextmanager
async def _sqlite_database(tmp_path: Path, server: Any, migrated: bool) -> AsyncIterator[str]:
    # The file does not exist yet; opening and migrating it makes the schema.
    yield f"sqlite+aiosqlite:///{tmp_path}/wfe.db"


@contextlib.asynccontextmanager
async def _postgres_database(tmp_path: Path, server: Any, migrated: bool) -> AsyncIterator[str]:
    async with server.database(migrated=migrated) as url:
        yield url


DATABASES: dict[str, Callable[[Path, Any, bool], AbstractAsyncContextManager[str]]] = {
    "sqlite": _sqlite_database,
    "postgres": _postgres_database,
}
"""A database of one SQL backend for one test: ``(tmp_path, postgres_server, migrated)``."""


@pytest.fixture
async def sql_url(
    sql_backend_name: str, tmp_path: Path, postgres_server: Any
) -> AsyncIterator[str]:
    """The URL of an empty, unmigrated database of the SQL backend under test."""
    async with DATABASES[sql_backend_name](tmp_path, postgres_server, False) as url:
        yield url


@pytest.fixture
async def sql_backend(
    sql_backend_name: str, tmp_path: Path, postgres_server: Any
) -> AsyncIterator[Backend]:
    """A migrated backend of the SQL backend under test, closed after the test."""
    async with DATABASES[sql_backend_name](tmp_path, postgres_server, True) as url:
        backend = open_by_url(url)
        try:
            await backend.persistence.migrate()
            yield backend
        finally:
            await backend.close()


@pytest.fixture
async def pg_url(require_postgres: Any) -> AsyncIterator[str]:
    """PostgreSQL-only tests: a migrated database of its own."""
    async with require_postgres.database(migrated=True) as url:
        yield url


@pytest.fixture
async def pg_backend(pg_url: str) -> AsyncIterator[Backend]:
    """PostgreSQL-only tests: a backend on ``pg_url``, closed after the test."""
    backend = open_by_url(pg_url)
    try:
        await backend.persistence.migrate()
        yield backend
    finally:
        await backend.close()


def database_of(backend: Backend) -> Database:
    """The :class:`Database` behind a SQL backend."""
    return cast(SqlPersistence, backend.persistence).database


@pytest.fixture(params=[True, False], ids=["locked", "unlocked"])
def locking(request: pytest.FixtureRequest, pg_backend: Backend, monkeypatch: Any) -> bool:
    """Run with the event-key locks (the product), and without them (to show the race)."""
    if not request.param:
        dialect = database_of(pg_backend).dialect

        async def no_lock(conn: SqlConnection, keys: Sequence[tuple[str, str]]) -> None:
            return None

        monkeypatch.setattr(dialect, "lock_event_keys", no_lock)
    return bool(request.param)
