"""SQL-specific behaviour beyond the shared contract: batched purge, in-process wake-ups,
search escaping, the database clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

import sqlalchemy as sa

from wfe_core.models import StepCommit, WorkflowStatus
from wfe_core.ports.backend import Backend
from wfe_sql.connection import SqlConnection
from wfe_sql.purge import PURGE_BATCH
from wfe_sql.schema import events, pointers, workflows

from .conftest import database_of
from .support import DEFINITION, ELIGIBLE, new_workflow

FINISHED = frozenset({WorkflowStatus.COMPLETE, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED})


async def count(backend: Backend, table: sa.Table) -> int:
    async def work(conn: SqlConnection) -> int:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())

    return await database_of(backend).read(f"count {table.name}", work)


async def test_purge_deletes_more_than_one_batch(sql_backend: Backend) -> None:
    db = database_of(sql_backend)
    total = PURGE_BATCH * 2 + 17
    old = db.clock.now_ms() - 86_400_000
    done = [
        {
            "id": f"wf-{i}",
            "definition_id": DEFINITION,
            "version": 1,
            "status": WorkflowStatus.COMPLETE.value,
            "data": "{}",
            "create_time": old,
            "complete_time": old,
            "lease_token": 1,
            "recoveries": 0,
        }
        for i in range(total)
    ]
    steps = [
        {"id": f"p-{i}", "workflow_id": f"wf-{i}", "position": 0, "step_id": 0}
        | {"step_name": "a", "status": "COMPLETE", "body": "{}"}
        for i in range(total)
    ]
    old_events = [
        {"id": f"e-{i}", "name": "n", "key": "k", "data": "null", "event_time": old}
        for i in range(PURGE_BATCH + 3)
    ]

    async def fill(conn: SqlConnection) -> None:
        await conn.execute(sa.insert(workflows), done)
        await conn.execute(sa.insert(pointers), steps)
        await conn.execute(sa.insert(events), old_events)

    await db.write("fill", fill)
    kept, _ = await sql_backend.persistence.create_workflow(new_workflow())

    assert await sql_backend.persistence.purge(db.clock.now_ms() - 60_000, FINISHED) == total
    assert await count(sql_backend, workflows) == 1
    assert await count(sql_backend, pointers) == 1
    assert await count(sql_backend, events) == 0
    assert (await sql_backend.persistence.get_workflow(kept.id)).id == kept.id


async def test_work_made_due_in_this_process_wakes_waiters(sql_backend: Backend) -> None:
    store, queue = sql_backend.persistence, sql_backend.queue

    async def woken_by(make_work: Awaitable[object]) -> None:
        waiter = asyncio.create_task(queue.wait_for_work(30))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await make_work
        await asyncio.wait_for(waiter, 5)

    await woken_by(store.create_workflow(new_workflow()))
    [claim] = await queue.claim("host", 1, 30, ELIGIBLE)
    await woken_by(queue.release(claim))
    [claim] = await queue.claim("host", 1, 30, ELIGIBLE)
    commit = StepCommit(
        workflow_id=claim.workflow_id,
        owner=claim.owner,
        token=claim.token,
        next_execution=0,
        release=True,
    )
    await woken_by(store.commit(commit))


async def test_a_cancelled_waiter_does_not_eat_a_wake_up(sql_backend: Backend) -> None:
    queue = sql_backend.queue
    cancelled = asyncio.create_task(queue.wait_for_work(30))
    await asyncio.sleep(0.01)
    queue.wake()
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    await asyncio.wait_for(queue.wait_for_work(30), 5)


async def test_search_matches_literally_and_case_insensitively(sql_backend: Backend) -> None:
    store = sql_backend.persistence
    percent, _ = await store.create_workflow(new_workflow(reference="Order 100%"))
    plain, _ = await store.create_workflow(new_workflow(reference="order 1000"))
    data = new_workflow()
    data.data = json.dumps({"customer": "Ada_Lovelace"})
    by_data, _ = await store.create_workflow(data)
    search = sql_backend.search
    assert search is not None

    assert await search.search("100%") == [percent.id]
    assert set(await search.search("ORDER 100")) == {percent.id, plain.id}
    assert await search.search("ada_love") == [by_data.id]
    assert await search.search("a_a") == []
    assert len(await search.search(DEFINITION, limit=2)) == 2


async def test_the_store_clock_never_runs_behind_the_database(sql_backend: Backend) -> None:
    store = sql_backend.persistence
    for _ in range(20):
        record, _ = await store.create_workflow(new_workflow())
        assert record.create_time <= store.now_ms()
        event = await store.publish_event("n", "k", "{}")
        assert record.create_time <= event.event_time <= store.now_ms()
