"""Sub-workflow races under READ COMMITTED (PostgreSQL).

"Parent subscribes to its child's end" and "child finishes" (by a step commit or a
terminate) each take the event-key lock of (CHILD_FINISHED_EVENT, child id) before any
row lock, so each sees the other's rows and the parent is always woken. Each test holds
one side's transaction open at its critical point while the other runs; the "unlocked"
runs (event-key locks disabled) show the lost wake-up the lock prevents.

A terminate also locks the keys of the descendants it cascades into: a child finishing
meanwhile (it locks its own row, then its parent's to wake it) then waits for the
terminate instead of deadlocking with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from wfe_core.errors import LeaseLost
from wfe_core.models import (
    CHILD_FINISHED_EVENT,
    Claim,
    EventSubscription,
    StepCommit,
    WorkflowStatus,
)
from wfe_core.ports.backend import Backend
from wfe_sql import children, workflows
from wfe_sql import commit as commits
from wfe_sql.database import Database

from .conftest import database_of
from .support import ELIGIBLE, new_workflow
from .test_postgres_races import open_transaction, until_blocked_or_done

UNFINISHED = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})


@pytest.fixture(params=[True, False], ids=["locked", "unlocked"])
def locking(request: pytest.FixtureRequest, pg_backend: Backend, monkeypatch: Any) -> bool:
    """Run with the event-key locks (the product), and without them (to show the race)."""
    if not request.param:
        dialect = database_of(pg_backend).dialect

        async def no_lock(conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> None:
            return None

        monkeypatch.setattr(dialect, "lock_event_keys", no_lock)
    return bool(request.param)


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


def subscribe(parent: Claim, child_id: str) -> StepCommit:
    """The parent's commit that starts waiting for the child's end and goes idle."""
    sub = EventSubscription(
        id=f"sub-{uuid.uuid4()}",
        workflow_id=parent.workflow_id,
        pointer_id=f"p-{uuid.uuid4()}",
        event_name=CHILD_FINISHED_EVENT,
        event_key=child_id,
        as_of=0,
    )
    return StepCommit(
        workflow_id=parent.workflow_id,
        owner=parent.owner,
        token=parent.token,
        next_execution=None,
        release=True,
        new_subscriptions=[sub],
    )


def finish(child: Claim) -> StepCommit:
    return StepCommit(
        workflow_id=child.workflow_id,
        owner=child.owner,
        token=child.token,
        status=WorkflowStatus.COMPLETE,
    )


async def terminate_statements(conn: AsyncConnection, db: Database, workflow_id: str) -> None:
    """What ``set_status(..., TERMINATED)`` runs in its transaction."""
    await children.lock_for_finish(conn, db.dialect, workflow_id, cascade=True)
    record, _ = await workflows.set_status(
        conn, db.dialect, workflow_id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED
    )
    await children.publish_child_finished(conn, db.dialect, record)
    await children.terminate_descendants(conn, db.dialect, workflow_id)


async def is_due(backend: Backend, workflow_id: str) -> bool:
    claims = await backend.queue.claim("host-b", 10, 30.0, ELIGIBLE)
    return [c.workflow_id for c in claims] == [workflow_id]


@pytest.mark.parametrize("how", ["commit", "terminate"])
async def test_a_child_finishing_while_its_parent_subscribes(
    pg_backend: Backend, locking: bool, how: str
) -> None:
    db, store = database_of(pg_backend), pg_backend.persistence
    parent, child = await family(pg_backend)
    prepared = commits.prepare_commit(subscribe(parent, child.workflow_id))
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
        subscribing = asyncio.create_task(store.commit(subscribe(parent, child.workflow_id)))
        await until_blocked_or_done(db, subscribing)
    await subscribing
    assert await is_due(pg_backend, parent.workflow_id) is locking


async def test_terminating_a_parent_while_its_child_finishes_does_not_deadlock(
    pg_backend: Backend,
) -> None:
    db, store = database_of(pg_backend), pg_backend.persistence
    parent, child = await family(pg_backend)
    await store.commit(subscribe(parent, child.workflow_id))  # the parent waits, RUNNABLE
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
