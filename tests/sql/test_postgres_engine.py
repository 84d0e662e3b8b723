"""PostgreSQL engine set-up: URLs, session settings, transactions, SQLSTATE
classification, LISTEN/NOTIFY and its supervision, surviving killed connections."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

from wfe import StepContext, WorkflowBuilder, WorkflowHost, WorkflowStatus
from wfe.backends import open_backend
from wfe_core.errors import ProviderError
from wfe_core.ports.backend import Backend
from wfe_postgres.dialect import PostgresDialect, normalize_url, postgres_sqlstate
from wfe_postgres.listener import PostgresListener
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database, RetryPolicy
from wfe_sql.provider import open_sql_backend
from wfe_sql.schema import workflows

from .conftest import database_of
from .support import ELIGIBLE, new_workflow

REPO_ROOT = Path(__file__).resolve().parents[2]


def with_query(url: str, **query: str) -> str:
    return str(sa.make_url(url).update_query_dict(query).render_as_string(False))


async def session_value(db: Database, setting: str, *, write: bool = False) -> str:
    async def show(conn: SqlConnection) -> str:
        return str((await conn.exec_driver_sql(f"SHOW {setting}")).scalar_one())

    return await (db.write(f"show {setting}", show) if write else db.read(setting, show))


async def admin(url: str) -> Any:
    return await asyncpg.connect(url)


async def terminate(url: str, application_name: str) -> int:
    """``pg_terminate_backend`` on every connection with this application name."""
    conn = await admin(url)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = $1 AND pid <> pg_backend_pid()",
            application_name,
        )
        return len(rows)
    finally:
        await conn.close()


async def connections(url: str, application_name: str) -> int:
    conn = await admin(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                application_name,
            )
        )
    finally:
        await conn.close()


async def eventually(condition: Callable[[], Awaitable[bool] | bool], timeout: float) -> None:
    """Wait until ``condition()`` holds (a correctness wait, never a timing assertion)."""
    async with asyncio.timeout(timeout):
        while True:
            outcome = condition()
            if outcome if isinstance(outcome, bool) else await outcome:
                return
            await asyncio.sleep(0.02)


def test_urls_get_the_asyncpg_driver_and_options_leave_the_url() -> None:
    for scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        url, options = normalize_url(f"{scheme}://u:p@db:5433/wfe")
        assert (url.drivername, url.host, url.port, url.database) == (
            "postgresql+asyncpg",
            "db",
            5433,
            "wfe",
        )
        assert options.idle_in_transaction_session_timeout == "10s"
    url, options = normalize_url(
        "postgresql://db/wfe?pool_size=3&max_overflow=0&statement_timeout=5s"
        "&application_name=wfe:web-1&pool_pre_ping=true&ssl=prefer"
    )
    assert dict(url.query) == {"ssl": "prefer"}  # for asyncpg; ours are taken out
    assert (options.pool_size, options.max_overflow, options.pool_pre_ping) == (3, 0, True)
    assert options.listen and not normalize_url("postgresql://db/wfe?listen=false")[1].listen
    assert options.server_settings() == {
        "application_name": "wfe:web-1",
        "idle_in_transaction_session_timeout": "10s",
        "statement_timeout": "5s",
        "plan_cache_mode": "force_custom_plan",
    }
    auto = normalize_url("postgresql://db/wfe?plan_cache_mode=auto")[1]
    assert auto.server_settings()["plan_cache_mode"] == "auto"
    for bad in (
        "sqlite:///x.db",
        "postgresql+psycopg://db/wfe",
        "postgresql://db/wfe?pool_size=many",
        "postgresql://db/wfe?pool_pre_ping=maybe",
        "postgresql://db/wfe?idle_timeout=5s",  # not an option (a typo must not pass)
    ):
        with pytest.raises(ValueError):
            normalize_url(bad)


def test_importing_wfe_and_wfe_postgres_loads_no_driver() -> None:
    code = (
        "import sys, wfe, wfe_postgres\n"
        "print(sorted(m for m in ('sqlalchemy', 'asyncpg') if m in sys.modules))\n"
        "wfe_postgres.open_backend('postgresql://nowhere/db')\n"
        "print('asyncpg' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]", out
    assert out[1] == "True"


async def test_sessions_carry_the_settings_and_reads_are_read_only_snapshots(
    pg_url: str,
) -> None:
    name = f"wfe:test-{uuid.uuid4().hex[:8]}"
    backend = open_backend(with_query(pg_url, application_name=name, statement_timeout="7s"))
    db = database_of(backend)
    try:
        assert await session_value(db, "idle_in_transaction_session_timeout") == "10s"
        assert await session_value(db, "statement_timeout") == "7s"
        assert await session_value(db, "application_name") == name
        assert await session_value(db, "plan_cache_mode") == "force_custom_plan"
        assert await session_value(db, "transaction_isolation") == "repeatable read"
        assert await session_value(db, "transaction_read_only") == "on"
        assert await session_value(db, "transaction_isolation", write=True) == "read committed"
        assert await session_value(db, "transaction_read_only", write=True) == "off"
        # The pool hands the connection on with the read settings reset.
        assert await session_value(db, "transaction_read_only", write=True) == "off"
    finally:
        await backend.close()


def dbapi_error(sqlstate: str | None, *, invalidated: bool = False) -> sa_exc.DBAPIError:
    class DriverError(Exception):
        pass

    orig = DriverError("boom")
    orig.sqlstate = sqlstate  # type: ignore[attr-defined]
    return sa_exc.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("sqlstate", "transient"),
    [
        ("08006", True),  # connection_failure
        ("08003", True),  # connection_does_not_exist
        ("57P01", True),  # admin_shutdown
        ("57P02", True),  # crash_shutdown
        ("57P03", True),  # cannot_connect_now
        ("40001", True),  # serialization_failure
        ("40P01", True),  # deadlock_detected
        ("55P03", True),  # lock_not_available
        ("53300", True),  # too_many_connections
        ("23505", False),  # unique_violation
        ("42601", False),  # syntax_error
        ("57014", False),  # query_canceled (statement_timeout)
        (None, False),
    ],
)
def test_errors_are_classified_by_sqlstate(sqlstate: str | None, transient: bool) -> None:
    dialect = PostgresDialect("postgresql://db/wfe")
    assert dialect.is_transient(dbapi_error(sqlstate)) is transient
    assert dialect.is_transient(dbapi_error(None, invalidated=True)) is True


async def test_a_constraint_violation_is_permanent_and_keeps_its_sqlstate(
    pg_backend: Backend,
) -> None:
    new = new_workflow()
    await pg_backend.persistence.create_workflow(new)
    with pytest.raises(ProviderError) as caught:
        await pg_backend.persistence.create_workflow(new)
    assert caught.value.transient is False
    assert isinstance(caught.value.__cause__, sa_exc.IntegrityError)
    assert postgres_sqlstate(caught.value.__cause__) == "23505"


async def test_a_host_stalled_inside_a_transaction_loses_it_and_its_row_locks(
    pg_url: str,
) -> None:
    stalled = open_sql_backend(
        PostgresDialect(with_query(pg_url, idle_in_transaction_session_timeout="300ms")),
        RetryPolicy(attempts=1),
    )
    try:
        record, _ = await stalled.persistence.create_workflow(new_workflow())

        async def lock_then_stall(conn: SqlConnection) -> None:
            await conn.execute(
                sa.update(workflows).where(workflows.c.id == record.id).values(recoveries=7)
            )
            await asyncio.sleep(1.5)  # paused while holding the row lock

        stall = asyncio.create_task(database_of(stalled).write("stall", lock_then_stall))
        await asyncio.sleep(0.1)
        other = await admin(pg_url)
        try:
            # Waits for the row until the server ends the idle transaction.
            async with asyncio.timeout(1.2):
                await other.execute(
                    "UPDATE wfe_workflows SET recoveries = 1 WHERE id = $1", record.id
                )
        finally:
            await other.close()
        with pytest.raises(ProviderError) as caught:
            await stall
        assert caught.value.transient is True
        assert (await stalled.persistence.get_workflow(record.id)).recoveries == 1
    finally:
        await stalled.close()


def listener_of(backend: Backend) -> PostgresListener:
    listener = database_of(backend)._listener
    assert isinstance(listener, PostgresListener)
    return listener


async def test_a_notification_from_another_host_wakes_an_idle_one(pg_url: str) -> None:
    idle, busy = open_backend(pg_url), open_backend(pg_url)
    try:
        await idle.queue.wait_for_work(0)  # starts LISTEN (as the first poll does)
        assert listener_of(idle).listening
        waiter = asyncio.create_task(idle.queue.wait_for_work(60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await busy.persistence.create_workflow(new_workflow())
        await asyncio.wait_for(waiter, 5)
    finally:
        await idle.close()
        await busy.close()


async def test_the_listener_reconnects_after_its_backend_is_terminated(pg_url: str) -> None:
    name = f"wfe:listen-{uuid.uuid4().hex[:8]}"
    idle = open_backend(with_query(pg_url, application_name=name))
    busy = open_backend(pg_url)
    try:
        await idle.queue.wait_for_work(0)
        listener = listener_of(idle)
        waiter = asyncio.create_task(idle.queue.wait_for_work(60))
        await asyncio.sleep(0.05)
        assert await terminate(pg_url, name) == 1
        # Notifications sent while it was away are lost: the reconnect wakes it once.
        await asyncio.wait_for(waiter, 10)
        await eventually(lambda: listener.listening, 10)
        assert listener.connects == 2
        waiter = asyncio.create_task(idle.queue.wait_for_work(60))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await busy.persistence.create_workflow(new_workflow())
        await asyncio.wait_for(waiter, 5)
    finally:
        await idle.close()
        await busy.close()
    assert await connections(pg_url, name) == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "wfe-pg-listener"]


async def test_closing_leaves_no_connection_and_no_task(pg_url: str) -> None:
    name = f"wfe:close-{uuid.uuid4().hex[:8]}"
    for _ in range(5):
        backend = open_backend(with_query(pg_url, application_name=name))
        await backend.queue.claim("host", 5, 30.0, ELIGIBLE)
        await backend.persistence.create_workflow(new_workflow())
        await backend.close()
    await eventually(lambda: _connections_gone(pg_url, name), 5)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "wfe-pg-listener"]


async def _connections_gone(url: str, name: str) -> bool:
    return await connections(url, name) == 0


async def test_a_migration_leaves_no_advisory_lock_held(pg_url: str) -> None:
    backend = open_backend(pg_url)
    try:
        await backend.persistence.migrate()
        conn = await admin(pg_url)
        try:
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        finally:
            await conn.close()
        assert held == 0
    finally:
        await backend.close()


class Count(BaseModel):
    n: int = 0


async def add_one(ctx: StepContext[Count]) -> None:
    ctx.data.n += 1
    await asyncio.sleep(0.01)


async def test_a_host_survives_the_termination_of_all_its_connections(pg_url: str) -> None:
    name = f"wfe:doomed-{uuid.uuid4().hex[:8]}"
    flow = (
        WorkflowBuilder("counted", version=1, data=Count)
        .start_with(add_one, name="a")
        .then(add_one, name="b")
        .then(add_one, name="c")
        .build()
    )
    backend = open_backend(with_query(pg_url, application_name=name))
    host = WorkflowHost(backend, lease=2.0, poll_interval=0.1, log_events=False)
    host.register(flow)
    killed = 0
    async with host:
        ids = [await host.start_workflow("counted", Count()) for _ in range(20)]
        for _ in range(8):
            await asyncio.sleep(0.15)
            killed += await terminate(pg_url, name)
        done = [await host.wait_for_completion(wid, timeout=30) for wid in ids]
    assert killed > 0
    assert all(inst.status is WorkflowStatus.COMPLETE and inst.data.n == 3 for inst in done)
    await backend.close()


async def test_a_listener_started_while_the_server_is_away_connects_later_and_wakes(
    pg_url: str,
) -> None:
    dialect = PostgresDialect(pg_url)
    refusals = 2

    async def connect() -> Any:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise ConnectionRefusedError("not yet")
        return await dialect.connect_listener()

    woken = asyncio.Event()
    listener = PostgresListener(connect, "wfe_test", woken.set, first_backoff=0.01)
    try:
        await listener.start()  # returns after the first refusal: polls cover meanwhile
        assert not listener.listening
        # Once it gets through, it wakes the host: it missed what was sent meanwhile.
        await asyncio.wait_for(woken.wait(), 5)
        assert listener.listening and listener.connects == 1
    finally:
        await listener.close()
    assert not listener.listening


async def test_listening_can_be_turned_off(pg_url: str) -> None:
    backend = open_backend(with_query(pg_url, listen="false"))
    try:
        assert backend.queue.supports_notify is False
        await backend.queue.claim("host", 1, 30.0, ELIGIBLE)
        await backend.queue.wait_for_work(0)
        assert database_of(backend)._listener is None
    finally:
        await backend.close()
