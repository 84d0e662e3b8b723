"""Sub-workflow races under READ COMMITTED (PostgreSQL).

"Parent subscribes to its child's end" and "child finishes" (by a step commit or a
terminate) each take the event-key lock of (CHILD_FINISHED_EVENT, child id) before any
row lock, so each sees the other's rows and the parent is always woken. Each test holds
one side's transaction open at its critical point while the other runs; the "unlocked"
runs (event-key locks disabled) show the lost wake-up the lock prevents.

A terminate also locks the keys of the descendants it cascades into: a child finishing
meanwhile (it locks its own row, then its parent's to wake it) then waits for the
terminate instead of deadlocking with it.

A child created while its parent (or an ancestor) is terminated: the creation holds a
share lock on the parent's row, which the terminate's UPDATE must wait for (and the
other way round), so the child is either refused or caught by the cascade, which reads
each level only after locking the one above. Never RUNNABLE under a TERMINATED parent.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from wfe.backends import open_backend
from wfe_core.errors import InvalidStateTransition, LeaseLost, NotFound
from wfe_core.models import (
    CHILD_FINISHED_EVENT,
    Claim,
    NewWorkflow,
    StepCommit,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowStatus,
)
from wfe_core.ports.backend import Backend
from wfe_sql import children, rows, workflows
from wfe_sql import commit as commits
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database

from .conftest import database_of
from .support import ELIGIBLE, new_workflow
from .test_postgres_races import (
    finish,
    is_due,
    jittered,
    open_transaction,
    subscribe,
    until_blocked_or_done,
)

UNFINISHED = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})
ITERATIONS = 100  # of the two-host race of a child start and its parent's terminate


async def claim(backend: Backend, workflow_id: str) -> Claim:
    [claimed] = await backend.queue.claim("host-a", 1, 30.0, ELIGIBLE)
    assert claimed.workflow_id == workflow_id
    return claimed


async def family(backend: Backend) -> tuple[Claim, Claim]:
    """A parent and its child, both claimed (the parent's step is about to wait)."""
    store = backend.persistence
    parent, _ = await store.create_workflow(new_workflow())
    parent_claim = await claim(backend, parent.id)
    child, _ = await store.create_workflow(new_workflow(parent_id=parent.id))
    return parent_claim, await claim(backend, child.id)


def waiting_for(parent: Claim, child_id: str) -> StepCommit:
    """The parent's commit that starts waiting for the child's end and goes idle."""
    return subscribe(parent, child_id, CHILD_FINISHED_EVENT)


async def terminate_statements(conn: SqlConnection, db: Database, workflow_id: str) -> None:
    """What ``set_status(..., TERMINATED)`` runs in its transaction."""
    await children.lock_for_finish(conn, db.dialect, workflow_id, cascade=True)
    record, _ = await workflows.set_status(
        conn, db.dialect, workflow_id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED
    )
    await children.publish_child_finished(conn, db.dialect, record)
    await children.terminate_descendants(conn, db.dialect, workflow_id)


@pytest.mark.parametrize("how", ["commit", "terminate"])
async def test_a_child_finishing_while_its_parent_subscribes(
    pg_backend: Backend, locking: bool, how: str
) -> None:
    db, store = database_of(pg_backend), pg_backend.persistence
    parent, child = await family(pg_backend)
    prepared = commits.prepare_commit(waiting_for(parent, child.workflow_id))
    async with open_transaction(db) as conn:
        await commits.apply_commit(conn, db.dialect, prepared)
        # The subscription is written, not committed: now the child finishes.
        if how == "commit":
            ending = asyncio.create_task(store.commit(finish(child)))
        else:
            ending = asyncio.create_task(
                store.set_status(
                    child.workflow_id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED
                )
            )
        await until_blocked_or_done(db, ending)
    await ending
    assert await is_due(pg_backend, parent.workflow_id) is locking


@pytest.mark.parametrize("how", ["commit", "terminate"])
async def test_a_parent_subscribing_while_its_child_finishes(
    pg_backend: Backend, locking: bool, how: str
) -> None:
    db, store = database_of(pg_backend), pg_backend.persistence
    parent, child = await family(pg_backend)
    async with open_transaction(db) as conn:
        if how == "commit":
            await commits.apply_commit(conn, db.dialect, commits.prepare_commit(finish(child)))
        else:
            await terminate_statements(conn, db, child.workflow_id)
        # The event is written, not committed: now the parent starts waiting for it.
        subscribing = asyncio.create_task(store.commit(waiting_for(parent, child.workflow_id)))
        await until_blocked_or_done(db, subscribing)
    await subscribing
    assert await is_due(pg_backend, parent.workflow_id) is locking


async def test_terminating_a_parent_while_its_child_finishes_does_not_deadlock(
    pg_backend: Backend,
) -> None:
    db, store = database_of(pg_backend), pg_backend.persistence
    parent, child = await family(pg_backend)
    await store.commit(waiting_for(parent, child.workflow_id))  # the parent waits, RUNNABLE
    async with open_transaction(db) as conn:
        # The terminate holds the parent's row and is about to cascade into the child's.
        await children.lock_for_finish(conn, db.dialect, parent.workflow_id, cascade=True)
        await workflows.set_status(
            conn, db.dialect, parent.workflow_id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED
        )
        # The child's finishing commit would lock its row, then want the parent's.
        finishing = asyncio.create_task(store.commit(finish(child)))
        await until_blocked_or_done(db, finishing)
        assert not finishing.done()  # held at the event-key lock, before any row lock
        async with asyncio.timeout(10):
            assert await children.terminate_descendants(conn, db.dialect, parent.workflow_id) == 1
    with pytest.raises(LeaseLost):
        await finishing
    for wid in (parent.workflow_id, child.workflow_id):
        assert (await store.get_workflow(wid)).status is WorkflowStatus.TERMINATED


async def waiting_on_a_lock(db: Database) -> bool:
    """Whether a session of this database waits for a lock (a row's, here)."""

    async def count(conn: SqlConnection) -> int:
        stmt = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        return int((await conn.exec_driver_sql(stmt)).scalar_one())

    return await db.read("look at lock waits", count) > 0


async def create_statements(conn: SqlConnection, db: Database, new: NewWorkflow) -> None:
    """What ``create_workflow`` of a child runs in its transaction (parent open)."""
    assert new.parent_id is not None
    assert await children.lock_parent(conn, new.parent_id) is None
    assert await workflows.insert_workflow(conn, db.dialect, new) is not None
    pointer_rows = [rows.pointer_values(new.id, p) for p in new.pointers]
    await workflows.insert_pointers(conn, pointer_rows, 0)


async def outcome_of_child(backend: Backend, child_id: str) -> WorkflowStatus | None:
    """The child's status, ``None`` if it was never stored."""
    try:
        return (await backend.persistence.get_workflow(child_id)).status
    except NotFound:
        return None


async def assert_no_orphan(backend: Backend, root_id: str) -> None:
    """The root is TERMINATED and nothing below it is left open."""
    store = backend.persistence
    assert (await store.get_workflow(root_id)).status is WorkflowStatus.TERMINATED
    everything = await store.list_workflows(WorkflowQuery(limit=1000))
    below: dict[str, list[WorkflowRecord]] = {}
    for record in everything:
        if record.parent_id is not None:
            below.setdefault(record.parent_id, []).append(record)
    level, orphans = [root_id], []
    while level:
        found = [r for wid in level for r in below.get(wid, [])]
        orphans += [r.id for r in found if r.status in UNFINISHED]
        level = [r.id for r in found]
    assert orphans == [], f"left open under a TERMINATED workflow: {orphans}"


async def test_a_child_created_while_its_parent_is_terminated_is_terminated(
    pg_backend: Backend,
) -> None:
    db, store = database_of(pg_backend), pg_backend.persistence
    parent, _ = await store.create_workflow(new_workflow(next_execution=None))
    new = new_workflow(parent_id=parent.id)
    async with open_transaction(db) as conn:
        await create_statements(conn, db, new)
        # The child row is written, not committed: now the parent is terminated.
        terminating = asyncio.create_task(
            store.set_status(parent.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)
        )
        await until_blocked_or_done(db, terminating, waiting_on_a_lock)
        waited = not terminating.done()  # for the child's commit
    await terminating
    assert await outcome_of_child(pg_backend, new.id) is WorkflowStatus.TERMINATED
    await assert_no_orphan(pg_backend, parent.id)
    assert waited


async def test_a_child_created_while_its_grandparent_is_terminated_is_terminated(
    pg_backend: Backend,
) -> None:
    """The cascade locks a level before it reads the next: a grandchild whose creation
    holds its parent's row is seen once the cascade got that row."""
    db, store = database_of(pg_backend), pg_backend.persistence
    root, _ = await store.create_workflow(new_workflow(next_execution=None))
    middle, _ = await store.create_workflow(new_workflow(parent_id=root.id, next_execution=None))
    new = new_workflow(parent_id=middle.id)
    async with open_transaction(db) as conn:
        await create_statements(conn, db, new)
        terminating = asyncio.create_task(
            store.set_status(root.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)
        )
        await until_blocked_or_done(db, terminating, waiting_on_a_lock)
        waited = not terminating.done()  # its cascade, for the grandchild's commit
    await terminating
    assert await outcome_of_child(pg_backend, middle.id) is WorkflowStatus.TERMINATED
    assert await outcome_of_child(pg_backend, new.id) is WorkflowStatus.TERMINATED
    await assert_no_orphan(pg_backend, root.id)
    assert waited


@pytest.mark.parametrize("depth", [1, 2], ids=["child", "grandchild"])
async def test_a_child_started_while_its_parent_is_being_terminated_is_refused(
    pg_backend: Backend, depth: int
) -> None:
    db, store = database_of(pg_backend), pg_backend.persistence
    root, _ = await store.create_workflow(new_workflow(next_execution=None))
    parent = root
    for _ in range(depth - 1):
        parent, _ = await store.create_workflow(
            new_workflow(parent_id=parent.id, next_execution=None)
        )
    new = new_workflow(parent_id=parent.id, idempotency_key=f"key-{uuid.uuid4()}")
    async with open_transaction(db) as conn:
        await terminate_statements(conn, db, root.id)
        # The tree is TERMINATED, not committed: now a child of it is started.
        starting = asyncio.create_task(store.create_workflow(new))
        await until_blocked_or_done(db, starting, waiting_on_a_lock)
        waited = not starting.done()  # for the terminate's commit
    with pytest.raises(InvalidStateTransition) as refused:
        await starting
    assert (refused.value.workflow_id, refused.value.status) == (parent.id, "TERMINATED")
    assert await outcome_of_child(pg_backend, new.id) is None
    await assert_no_orphan(pg_backend, root.id)
    assert waited


async def test_racing_child_starts_and_terminates_from_two_hosts_leave_no_orphan(
    pg_url: str,
) -> None:
    rng = random.Random(777)
    starter, terminator = open_backend(pg_url), open_backend(pg_url)
    outcomes: dict[str, int] = {}
    try:
        await starter.persistence.migrate()
        for _ in range(ITERATIONS):
            parent, _ = await starter.persistence.create_workflow(new_workflow(next_execution=None))
            new = new_workflow(parent_id=parent.id, next_execution=None)

            async def start(new: NewWorkflow = new) -> str:
                try:
                    await starter.persistence.create_workflow(new)
                    return "created"
                except InvalidStateTransition:
                    return "refused"

            outcome, _ = await asyncio.gather(
                jittered(start(), rng),
                jittered(
                    terminator.persistence.set_status(
                        parent.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED
                    ),
                    rng,
                ),
            )
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            status = await outcome_of_child(starter, new.id)
            assert status is (WorkflowStatus.TERMINATED if outcome == "created" else None)
    finally:
        await starter.close()
        await terminator.close()
    assert sum(outcomes.values()) == ITERATIONS
