"""Several engines and processes on one database, and cancellations mid-transaction
(on every SQL backend)."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from wfe.backends import open_backend
from wfe_core.errors import LeaseLost, ProviderError
from wfe_core.models import Claim, StepCommit, WorkflowQuery
from wfe_core.ports.backend import Backend
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database

from .conftest import database_of
from .support import ELIGIBLE, new_workflow

REPO_ROOT = Path(__file__).resolve().parents[2]


async def open_many(url: str, count: int) -> list[Backend]:
    """``count`` backends on one database, each with its own engine (as separate hosts)."""
    backends = [open_backend(url) for _ in range(count)]
    for backend in backends:
        await backend.persistence.migrate()
    return backends


async def close_all(backends: list[Backend]) -> None:
    for backend in backends:
        await backend.close()


async def claim_until_empty(backend: Backend, owner: str) -> list[str]:
    claimed: list[str] = []
    while claims := await backend.queue.claim(owner, 3, 30.0, ELIGIBLE):
        claimed += [claim.workflow_id for claim in claims]
        # Yield for real so the other engine gets turns: the spread check below is
        # about both engines working, not about who wins a race to an empty queue.
        await asyncio.sleep(0.005)
    return claimed


async def test_two_engines_never_claim_one_workflow_twice(sql_url: str) -> None:
    backends = await open_many(sql_url, 2)
    try:
        ids = set()
        for _ in range(150):
            record, _ = await backends[0].persistence.create_workflow(new_workflow())
            ids.add(record.id)
        first, second = await asyncio.gather(
            claim_until_empty(backends[0], "host-a"), claim_until_empty(backends[1], "host-b")
        )
    finally:
        await close_all(backends)
    assert first and second, "both engines should have claimed some work"
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(ids)


async def test_two_processes_never_claim_one_workflow_twice(sql_url: str) -> None:
    [backend] = await open_many(sql_url, 1)
    try:
        created = [await backend.persistence.create_workflow(new_workflow()) for _ in range(200)]
    finally:
        await backend.close()
    ids = {record.id for record, _ in created}
    start_at = time.time() + 1.5  # after both interpreters have started
    procs = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.sql.procs", "claim", sql_url, owner, str(start_at)),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for owner in ("proc-a", "proc-b")
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    claimed = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        claimed.append(json.loads(out))
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == sorted(ids)


async def test_concurrent_idempotent_creates_from_several_engines_make_one_row(
    sql_url: str,
) -> None:
    backends = await open_many(sql_url, 3)
    try:
        results = await asyncio.gather(
            *(
                backend.persistence.create_workflow(new_workflow(idempotency_key="once"))
                for backend in backends
                for _ in range(8)
            )
        )
        listed = await backends[0].persistence.list_workflows(WorkflowQuery())
    finally:
        await close_all(backends)
    assert len({record.id for record, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert [record.id for record in listed] == [results[0][0].id]


async def sqlite_integrity(db: Database) -> None:
    async def check(conn: SqlConnection) -> object:
        return (await conn.exec_driver_sql("PRAGMA integrity_check")).scalar_one()

    assert await db.write("check", check) == "ok"


async def postgres_integrity(db: Database) -> None:
    async def check(conn: SqlConnection) -> object:
        # No session left inside a transaction by a cancelled task.
        stmt = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%'"
        )
        return (await conn.exec_driver_sql(stmt)).scalar_one()

    assert await db.read("check", check) == 0


INTEGRITY = {"sqlite": sqlite_integrity, "postgres": postgres_integrity}


async def test_random_cancellations_leave_the_engine_healthy(
    sql_backend_name: str, sql_backend: Backend
) -> None:
    rng = random.Random(20261121)
    store, queue = sql_backend.persistence, sql_backend.queue
    claims: list[Claim] = []

    async def create() -> None:
        await store.create_workflow(new_workflow())

    async def claim() -> None:
        claims.extend(await queue.claim("host", 2, 30.0, ELIGIBLE))

    async def commit() -> None:
        if claims:
            c = claims.pop()
            await store.commit(
                StepCommit(workflow_id=c.workflow_id, owner=c.owner, token=c.token, data="{}")
            )

    async def read() -> None:
        await store.list_workflows(WorkflowQuery(limit=20))

    operations: list[Callable[[], Coroutine[Any, Any, None]]] = [create, claim, commit, read]
    for _ in range(100):
        tasks = [asyncio.create_task(rng.choice(operations)()) for _ in range(3)]
        await asyncio.sleep(rng.uniform(0, 0.004))
        victim = rng.choice(tasks)
        victim.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            # A cancelled commit may lose its claim; nothing else may fail.
            assert outcome is None or isinstance(outcome, asyncio.CancelledError | LeaseLost), (
                outcome
            )

    db = database_of(sql_backend)
    assert connections_in_use(db) == 0
    record, created = await store.create_workflow(new_workflow())
    assert created and (await store.get_workflow(record.id)).id == record.id
    await INTEGRITY[sql_backend_name](db)
    assert connections_in_use(db) == 0


def connections_in_use(db: Database) -> int:
    """Connections checked out of the pool for a transaction: not those an engine keeps
    checked out between its transactions, for the next one (SQLite's ``idle``)."""
    kept: int = getattr(db.engine, "idle", 0)
    return db.engine.sync_engine.pool.checkedout() - kept  # type: ignore[attr-defined,no-any-return]


async def test_a_provider_error_inside_a_write_rolls_everything_back(
    sql_backend: Backend,
) -> None:
    store = sql_backend.persistence
    record, _ = await store.create_workflow(new_workflow())
    [claim] = await sql_backend.queue.claim("host", 1, 30.0, ELIGIBLE)
    event = await store.publish_event("paid", "k", "{}")
    commit = StepCommit(
        workflow_id=record.id,
        owner=claim.owner,
        token=claim.token,
        data=json.dumps({"n": 1}),
        delivered_events=[event.id, event.id],
    )
    try:
        await store.commit(commit)
    except ProviderError as exc:
        assert exc.transient is False
    else:
        raise AssertionError("a repeated delivery must fail")
    assert json.loads((await store.get_workflow(record.id)).data) == {"n": 0}
