"""The Alembic migrations are the schema: equal to the metadata, reversible, and safe
when several hosts migrate one empty file at once."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import migrations
from wfe_sql import migrate
from wfe_sql.database import Database
from wfe_sql.schema import VERSION_TABLE, metadata
from wfe_sqlite import open_backend
from wfe_sqlite.dialect import SqliteDialect

from .conftest import database_of

REPO_ROOT = Path(__file__).resolve().parents[2]


def head_revision() -> str:
    script = ScriptDirectory(migrations.SCRIPT_LOCATION)
    head = script.get_current_head()
    assert head is not None
    return head


def schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
    )
    return list(compare_metadata(context, metadata))


def wfe_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    return {name for (name,) in names if name.startswith("wfe_")}


def index_sql(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        found = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ).fetchall()
    conn.close()
    return dict(found)


async def test_upgrade_from_empty_equals_the_metadata(db_url: str, db_path: Path) -> None:
    db = Database(SqliteDialect(db_url))
    try:
        assert await migrate.current_revision(db) is None
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == head_revision()
        assert await db.read("compare", lambda conn: conn.run_sync(schema_diff)) == []
    finally:
        await db.close()
    assert wfe_tables(db_path) == {t for t in metadata.tables if t.startswith("wfe_")} | {
        VERSION_TABLE
    }
    # Alembic does not compare partial-index predicates: check the claim index's.
    assert "WHERE status = 'RUNNABLE'" in index_sql(db_path)["ix_wfe_workflows_due"]


async def test_upgrade_downgrade_upgrade_twice(db_url: str, db_path: Path) -> None:
    db = Database(SqliteDialect(db_url))
    try:
        for _ in range(2):
            await migrate.upgrade(db)
            assert await migrate.current_revision(db) == head_revision()
            await migrate.downgrade(db, "base")
            assert await migrate.current_revision(db) is None
            assert wfe_tables(db_path) == {VERSION_TABLE}
        await migrate.upgrade(db)
        assert await db.read("compare", lambda conn: conn.run_sync(schema_diff)) == []
    finally:
        await db.close()


async def test_migrate_twice_is_a_no_op(db_url: str) -> None:
    backend = open_backend(db_url)
    try:
        await backend.persistence.migrate()
        await backend.persistence.migrate()
        assert await migrate.current_revision(database_of(backend)) == head_revision()
    finally:
        await backend.close()


async def test_four_hosts_migrating_one_empty_file_at_once(db_url: str, db_path: Path) -> None:
    backends = [open_backend(db_url) for _ in range(4)]
    try:
        await asyncio.gather(*(backend.persistence.migrate() for backend in backends))
    finally:
        for backend in backends:
            await backend.close()
    with sqlite3.connect(db_path) as conn:
        versions = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
    conn.close()
    assert versions == [(head_revision(),)]


def test_four_processes_migrating_one_empty_file_at_once(db_url: str, db_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.sql.procs", "migrate", db_url],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    with sqlite3.connect(db_path) as conn:
        versions = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall()
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    assert versions == [(head_revision(),)]
