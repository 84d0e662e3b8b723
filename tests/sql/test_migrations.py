"""The Alembic migrations are the schema: equal to the metadata, reversible, and safe
when several hosts migrate one empty database at once (on every SQL backend)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import migrations
from wfe.backends import open_backend
from wfe_sql import migrate
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database
from wfe_sql.schema import VERSION_TABLE, metadata

from .conftest import database_of

REPO_ROOT = Path(__file__).resolve().parents[2]
WFE_TABLES = {name for name in metadata.tables if name.startswith("wfe_")}


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


async def wfe_tables(db: Database) -> set[str]:
    def names(connection: Connection) -> set[str]:
        return {t for t in sa.inspect(connection).get_table_names() if t.startswith("wfe_")}

    return await db.read("list tables", lambda conn: conn.run_sync(names))


async def due_index_predicate(db: Database) -> str:
    """The WHERE clause of the claim index, as the database reports it."""

    def predicate(connection: Connection) -> str:
        [index] = [
            ix
            for ix in sa.inspect(connection).get_indexes("wfe_workflows")
            if ix["name"] == "ix_wfe_workflows_due"
        ]
        options = index.get("dialect_options", {})
        return str(options.get(f"{connection.dialect.name}_where", ""))

    return await db.read("read the due index", lambda conn: conn.run_sync(predicate))


async def versions(db: Database) -> list[str]:
    async def read(conn: SqlConnection) -> list[str]:
        result = await conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
        return list(result.scalars())

    return await db.read("read versions", read)


async def test_upgrade_from_empty_equals_the_metadata(sql_url: str) -> None:
    backend = open_backend(sql_url)
    db = database_of(backend)
    try:
        assert await migrate.current_revision(db) is None
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == head_revision()
        assert await db.read("compare", lambda conn: conn.run_sync(schema_diff)) == []
        assert await wfe_tables(db) == WFE_TABLES | {VERSION_TABLE}
        # Alembic does not compare partial-index predicates: check the claim index's.
        predicate = await due_index_predicate(db)
        assert "status" in predicate and "'RUNNABLE'" in predicate, predicate
    finally:
        await backend.close()


async def test_upgrade_downgrade_upgrade_twice(sql_url: str) -> None:
    backend = open_backend(sql_url)
    db = database_of(backend)
    try:
        for _ in range(2):
            await migrate.upgrade(db)
            assert await migrate.current_revision(db) == head_revision()
            await migrate.downgrade(db, "base")
            assert await migrate.current_revision(db) is None
            assert await wfe_tables(db) == {VERSION_TABLE}
        await migrate.upgrade(db)
        assert await db.read("compare", lambda conn: conn.run_sync(schema_diff)) == []
    finally:
        await backend.close()


async def test_migrate_twice_is_a_no_op(sql_url: str) -> None:
    backend = open_backend(sql_url)
    try:
        await backend.persistence.migrate()
        await backend.persistence.migrate()
        assert await migrate.current_revision(database_of(backend)) == head_revision()
    finally:
        await backend.close()


async def test_four_hosts_migrating_one_empty_database_at_once(sql_url: str) -> None:
    backends = [open_backend(sql_url) for _ in range(4)]
    try:
        await asyncio.gather(*(backend.persistence.migrate() for backend in backends))
        assert await versions(database_of(backends[0])) == [head_revision()]
    finally:
        for backend in backends:
            await backend.close()


async def test_four_processes_migrating_one_empty_database_at_once(sql_url: str) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.sql.procs",
            "migrate",
            sql_url,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    backend = open_backend(sql_url)
    try:
        assert await versions(database_of(backend)) == [head_revision()]
    finally:
        await backend.close()
