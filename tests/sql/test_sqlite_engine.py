"""SQLite engine set-up: pragmas, our own BEGINs, error translation, URLs, imports."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from wfe_core.errors import ProviderError
from wfe_core.ports.backend import Backend
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database, RetryPolicy
from wfe_sql.provider import open_sql_backend
from wfe_sqlite import open_backend
from wfe_sqlite.dialect import SqliteDialect, normalize_url, sqlite_error_code
from wfe_sqlite.engine import SqliteConnection, SqliteEngine, driver_connection

from .conftest import database_of
from .support import ELIGIBLE, new_workflow

REPO_ROOT = Path(__file__).resolve().parents[2]


async def pragma(db: Database, name: str) -> Any:
    async def read(conn: SqlConnection) -> Any:
        return (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()

    return await db.read(f"read {name}", read)


async def test_connections_use_wal_no_busy_wait_inside_sqlite_and_synchronous_normal(
    sqlite_backend: Backend, db_path: Path
) -> None:
    db = database_of(sqlite_backend)
    assert await pragma(db, "journal_mode") == "wal"
    # Calls run on the event loop's thread: waiting for a lock is the dialect's job.
    assert await pragma(db, "busy_timeout") == 0
    assert await pragma(db, "synchronous") == 1  # NORMAL
    assert await pragma(db, "integrity_check") == "ok"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


async def test_synchronous_full_can_be_asked_for_in_the_url(db_path: Path) -> None:
    backend = open_backend(f"sqlite:///{db_path}?synchronous=full")
    try:
        assert await pragma(database_of(backend), "synchronous") == 2  # FULL
    finally:
        await backend.close()


async def test_writes_begin_immediate_and_reads_begin_deferred(sqlite_backend: Backend) -> None:
    db = database_of(sqlite_backend)
    seen: list[str] = []

    def record(statement: str) -> None:
        if statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append(statement)

    def trace(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # SQLite's own trace sees every statement it runs, however it was sent: the
        # BEGINs go to the sqlite3 connection directly, not through SQLAlchemy.
        dbapi_connection.set_trace_callback(record)

    await db.engine.dispose()  # every connection used below is opened anew, traced
    event.listen(db.engine.sync_engine, "connect", trace)
    try:
        await sqlite_backend.persistence.create_workflow(new_workflow())
        await sqlite_backend.queue.claim("host", 1, 30, ELIGIBLE)
        await db.read("read", lambda conn: conn.execute(sa.select(sa.literal(1))))
    finally:
        event.remove(db.engine.sync_engine, "connect", trace)
    # Each transaction also ended through SQLAlchemy: COMMIT for writes, and the
    # read's ROLLBACK (ending a read-only transaction).
    assert seen == ["BEGIN IMMEDIATE", "COMMIT", "BEGIN IMMEDIATE", "COMMIT", "BEGIN", "ROLLBACK"]


async def test_a_begin_sent_to_sqlite_opens_sqlalchemys_transaction_too(
    sqlite_backend: Backend,
) -> None:
    db = database_of(sqlite_backend)
    conn = await db.engine.connect()
    assert isinstance(conn, SqliteConnection)
    driver = driver_connection(conn.sync_connection)
    try:
        await db.dialect.begin(conn, write=True)
        assert conn.in_transaction() and driver.in_transaction
        await conn.exec_driver_sql("CREATE TABLE scratch (x INTEGER)")
        await conn.rollback()  # through SQLAlchemy: SQLite's transaction ends too
        assert not conn.in_transaction() and not driver.in_transaction
        tables = await conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name = 'scratch'")
        assert tables.all() == []
        # That read autobegan a transaction, for which the begin event sent a BEGIN.
        assert conn.in_transaction() and driver.in_transaction
        await conn.commit()

        # A BEGIN that SQLite refuses opens no transaction in SQLAlchemy either, and
        # fails as a statement sent through SQLAlchemy would.
        driver.execute("BEGIN")
        with pytest.raises(OperationalError) as caught:
            await db.dialect.begin(conn, write=False)
        assert sqlite_error_code(caught.value) == sqlite3.SQLITE_ERROR
        assert not conn.in_transaction()
        driver.execute("ROLLBACK")
    finally:
        await conn.close()


async def test_a_begin_on_a_closed_sqlite_connection_invalidates_it(
    sqlite_backend: Backend,
) -> None:
    db = database_of(sqlite_backend)
    conn = await db.engine.connect()
    assert isinstance(conn, SqliteConnection)
    try:
        driver_connection(conn.sync_connection).close()
        with pytest.raises(ProgrammingError) as caught:
            await db.dialect.begin(conn, write=True)
        # As SQLAlchemy treats a lost connection: dropped, and worth a retry.
        assert caught.value.connection_invalidated
        assert conn.sync_connection.invalidated
        assert db.dialect.is_transient(caught.value)
    finally:
        await conn.close()


async def test_connections_handed_back_are_kept_for_the_next_transactions(
    sqlite_backend: Backend,
) -> None:
    engine = database_of(sqlite_backend).engine
    assert isinstance(engine, SqliteEngine)
    await engine.dispose()  # start from none kept
    first, second = await engine.connect(), await engine.connect()
    assert first is not second  # concurrent transactions get one each
    await second.close()
    await first.close()
    await first.close()  # a second hand-back does not keep it twice
    assert engine.idle == 2
    assert await engine.connect() is first  # the last handed back is lent first
    assert await engine.connect() is second
    assert engine.idle == 0

    # Only a connection as a fresh checkout would be is kept.
    left_open = driver_connection(first.sync_connection)
    left_open.execute("BEGIN")  # behind SQLAlchemy's back
    await first.close()
    assert not left_open.in_transaction  # the pool's reset rolled it back
    await second.execution_options(isolation_level="SERIALIZABLE")
    await second.close()
    third = await engine.connect()
    await third.invalidate()
    await third.close()
    assert engine.idle == 0
    assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    fresh = await engine.connect()
    assert fresh not in (first, second, third)
    await fresh.close()

    # dispose closes the kept connections too.
    kept = driver_connection(fresh.sync_connection)
    assert engine.idle == 1
    await engine.dispose()
    assert engine.idle == 0
    with pytest.raises(sqlite3.ProgrammingError):
        kept.execute("SELECT 1")


async def test_a_connection_lent_across_dispose_is_closed_when_handed_back(
    sqlite_backend: Backend,
) -> None:
    engine = database_of(sqlite_backend).engine
    assert isinstance(engine, SqliteEngine)
    lent = await engine.connect()
    driver = driver_connection(lent.sync_connection)
    await engine.dispose()
    await lent.close()
    assert engine.idle == 0
    with pytest.raises(sqlite3.ProgrammingError):  # closed, not left in a disposed pool
        driver.execute("SELECT 1")


async def test_a_constraint_violation_is_a_permanent_provider_error(
    sqlite_backend: Backend,
) -> None:
    new = new_workflow()
    await sqlite_backend.persistence.create_workflow(new)
    with pytest.raises(ProviderError) as caught:
        await sqlite_backend.persistence.create_workflow(new)
    assert caught.value.transient is False
    cause = caught.value.__cause__
    assert isinstance(cause, IntegrityError)
    assert sqlite_error_code(cause) == sqlite3.SQLITE_CONSTRAINT


async def test_a_held_write_lock_is_waited_for_then_reported_as_transient(
    db_url: str, db_path: Path
) -> None:
    # One try at the Database seam: this is about the dialect's own BEGIN retry.
    backend = open_sql_backend(SqliteDialect(db_url, busy_timeout_ms=300), RetryPolicy(attempts=1))
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        await backend.persistence.migrate()
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(ProviderError) as caught:
            await backend.persistence.create_workflow(new_workflow())
        assert caught.value.transient is True
        assert isinstance(caught.value.__cause__, OperationalError)
        assert sqlite_error_code(caught.value.__cause__) == sqlite3.SQLITE_BUSY

        # Released while the retry waits: the write goes through.
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, blocker.execute, "COMMIT")
        _, created = await backend.persistence.create_workflow(new_workflow())
        assert created
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        blocker.close()
        await backend.close()


async def test_the_event_loop_keeps_running_while_another_process_holds_the_write_lock(
    db_url: str, db_path: Path
) -> None:
    backend = open_sql_backend(SqliteDialect(db_url), RetryPolicy(attempts=1))
    await backend.persistence.migrate()
    # Another process's transaction: a subprocess, so that nothing of ours holds it.
    blocker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sqlite3, time\n"
        f"c = sqlite3.connect({str(db_path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(0.6)\n"
        "c.execute('COMMIT')\n",
        stdout=asyncio.subprocess.PIPE,
    )
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert blocker.stdout is not None
        assert (await blocker.stdout.readline()).decode().strip() == "locked"
        loop = asyncio.get_running_loop()
        started = loop.time()
        _, created = await backend.persistence.create_workflow(new_workflow())
        waited = loop.time() - started
        assert created
        assert waited > 0.2, "the write went through while the other process held the lock"
        # Waiting for the lock did not block the loop: the ticker kept ticking.
        assert ticks >= waited / 0.01 / 3
    finally:
        ticker.cancel()
        await blocker.wait()
        await backend.close()


def test_urls_get_the_pysqlite_dialect_and_memory_is_refused(tmp_path: Path) -> None:
    url, synchronous = normalize_url(f"sqlite:///{tmp_path}/a.db")
    assert (url.drivername, url.database, synchronous) == (
        "sqlite+pysqlite",
        f"{tmp_path}/a.db",
        "NORMAL",
    )
    assert normalize_url(f"sqlite+aiosqlite:///{tmp_path}/a.db")[0] == url
    for bad in (
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://x/y",
        "sqlite:///a.db?synchronous=x",
    ):
        with pytest.raises(ValueError):
            open_backend(bad)


def test_importing_wfe_sqlite_is_cheap_and_opening_it_needs_no_asyncpg(tmp_path: Path) -> None:
    code = (
        "import sys, wfe_sqlite\n"
        "heavy = ('sqlalchemy', 'aiosqlite', 'alembic', 'asyncpg')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        f"wfe_sqlite.open_backend('sqlite:///{tmp_path}/x.db')\n"
        "print('asyncpg' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:2] == ["[]", "False"]
