"""Fixtures of the SQL-provider tests: real SQLite files in ``tmp_path``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from wfe_core.ports.backend import Backend
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


def database_of(backend: Backend) -> Database:
    """The :class:`Database` behind a SQL backend."""
    return cast(SqlPersistence, backend.persistence).database
