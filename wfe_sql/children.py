"""Sub-workflows in SQL: the child-finished event and the terminate cascade.

Both run inside the transaction that finishes a workflow (a step commit, or a control
operation), so a parent never misses its child's end and a terminated tree never keeps
a runnable branch.

Lock order (PostgreSQL): a finishing transaction takes the event-key lock of
``(CHILD_FINISHED_EVENT, id)`` before any row lock, as a publish does, and a parent's
commit that subscribes to it takes the same lock first; so "parent subscribes" and
"child finishes" are serialised, and each sees the other's rows. A terminate also
locks the keys of the open descendants it is about to terminate: a descendant that
is finishing meanwhile (it locks its own row, then wakes its parent's) would otherwise
deadlock with the cascade (which holds the parent's row and wants the descendant's).

A child is only created under an open parent, and its creation holds a share lock on
the parent's row until it commits (:func:`lock_parent`); the cascade reads each level
of the tree only after its UPDATE of the level above holds those rows. So a child
being created while its parent is terminated is either refused (it waited for the
terminate) or seen and terminated by the cascade (the terminate waited for it): it
never runs as an orphan. See :func:`lock_parent` for why this adds no deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import sqlalchemy as sa

from wfe_core.errors import InvalidStateTransition, NotFound
from wfe_core.models import (
    CHILD_FINISHED_EVENT,
    ChildFinished,
    WorkflowRecord,
    WorkflowStatus,
)
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import SqlDialect
from wfe_sql.events import insert_event, wake_subscribers
from wfe_sql.schema import workflows
from wfe_sql.workflows import select_workflow

_OPEN = (WorkflowStatus.RUNNABLE.value, WorkflowStatus.SUSPENDED.value)


def finished_key(workflow_id: str) -> tuple[str, str]:
    """The (event name, key) of a workflow's child-finished event (its lock key too)."""
    return (CHILD_FINISHED_EVENT, workflow_id)


async def publish_child_finished(
    conn: SqlConnection, dialect: SqlDialect, record: WorkflowRecord
) -> int:
    """Store the child-finished event of a workflow that just finished, if it has a
    parent, and wake the workflows waiting on it; returns how many it woke.

    ``record`` is the row as this transaction wrote it, so the event carries the data
    and error of the finishing write. The caller holds :func:`finished_key`'s lock.
    """
    if record.parent_id is None:
        return 0
    data = ChildFinished.of(record).model_dump_json()
    event = await insert_event(
        conn, dialect, uuid.uuid4().hex, CHILD_FINISHED_EVENT, record.id, data
    )
    return await wake_subscribers(conn, event)


async def publish_child_finished_of(
    conn: SqlConnection, dialect: SqlDialect, workflow_id: str
) -> int:
    """:func:`publish_child_finished` for a workflow this transaction just finished."""
    record = await select_workflow(conn, workflow_id)
    return 0 if record is None else await publish_child_finished(conn, dialect, record)


async def lock_parent(
    conn: SqlConnection, parent_id: str
) -> NotFound | InvalidStateTransition | None:
    """Share-lock the row of the parent of a workflow about to be created, in the
    creating transaction, before anything else; ``None`` if the parent is RUNNABLE or
    SUSPENDED, else the error that refuses the child (missing or finished parent).

    Why a lock: under READ COMMITTED a child row inserted while a terminate runs could
    commit after the terminate's cascade read the parent's children, and then run
    unterminated under a TERMINATED parent. ``FOR SHARE`` conflicts with the UPDATE of
    the terminate (and of every other status change), so one of the two waits for the
    other's commit: a creation that waited re-reads the parent as TERMINATED and is
    refused; a terminate that waited reads the parent's children only after its UPDATE
    got the row, so the cascade sees the new child. (SQLite renders no ``FOR SHARE``:
    its write transactions are serialised anyway.)

    Why no new deadlock: this is the creating transaction's first lock, and after it
    the creation can only wait on the unique index of its idempotency key, for a twin
    creation with the same key (a re-run of the same step: the same parent, whose
    share lock it already holds, since it has inserted). Nothing else ever waits for
    a creating transaction's own rows (uncommitted rows are invisible to other
    writers' WHERE clauses), so no cycle goes through it. It takes no event-key lock,
    so the commit path's order (event keys, then rows) is untouched: a terminate may
    wait for it while holding its event-key locks and the rows above, but the
    creation never waits for any of those.
    """
    stmt = sa.select(workflows.c.status).where(workflows.c.id == parent_id)
    status = (await conn.execute(stmt.with_for_update(read=True))).scalar_one_or_none()
    if status is None:
        return NotFound(parent_id, "parent of the new workflow")
    if status not in _OPEN:
        return InvalidStateTransition(parent_id, "start a child of", status)
    return None


async def _levels(
    conn: SqlConnection, root_id: str
) -> AsyncIterator[list[tuple[str, WorkflowStatus]]]:
    """The workflows below ``root_id`` by ``parent_id``, one level at a time (id and
    status; through finished ones too: a failed child may have left a grandchild
    running); uses ix_wfe_workflows_parent.

    A level is read only when the caller asks for it, so whatever the caller wrote
    on the level above (and the row locks that took) comes first.
    """
    seen, level = {root_id}, [root_id]
    while level:
        stmt = sa.select(workflows.c.id, workflows.c.status).where(workflows.c.parent_id.in_(level))
        below = [
            (row.id, WorkflowStatus(row.status))
            for row in await conn.execute(stmt)
            if row.id not in seen
        ]
        seen.update(wid for wid, _ in below)
        if below:
            yield below
        level = [wid for wid, _ in below]


async def open_descendants(conn: SqlConnection, root_id: str) -> list[str]:
    """Every RUNNABLE or SUSPENDED workflow below ``root_id``."""
    return [
        wid
        async for below in _levels(conn, root_id)
        for wid, status in below
        if status.value in _OPEN
    ]


async def lock_for_finish(
    conn: SqlConnection, dialect: SqlDialect, workflow_id: str, *, cascade: bool
) -> None:
    """Take, before any row lock, the event-key locks of a control operation that
    finishes ``workflow_id`` (and, with ``cascade``, terminates its open descendants).

    The descendants are those committed now: one created after this read (it may
    have made the terminate wait, see :func:`lock_parent`) has no key lock, so if
    it also got claimed, ran and began its finishing commit before the cascade
    reached it, the two would deadlock as described above. PostgreSQL detects that
    and aborts one, which is retried (``deadlock_detected`` is transient) and then
    takes the keys of the whole tree; nothing is lost but a moment.
    """
    keys = {finished_key(workflow_id)}
    if cascade:
        keys.update(finished_key(wid) for wid in await open_descendants(conn, workflow_id))
    await dialect.lock_event_keys(conn, sorted(keys))


async def terminate_descendants(conn: SqlConnection, dialect: SqlDialect, root_id: str) -> int:
    """TERMINATE every RUNNABLE or SUSPENDED workflow below ``root_id``, clearing their
    leases (which fences off their owners) as the root's was; returns how many.

    Called after the root's own UPDATE. Level by level: each level is read only once
    the UPDATE of the level above holds its rows, so a child whose creation held a
    share lock on one of them (see :func:`lock_parent`) has committed by then and is
    seen. (A parent found already finished cannot gain children, and the ones created
    before it finished committed before its finishing UPDATE did.) Reading the whole
    tree first would miss a grandchild committed in between.

    They publish no child-finished event: their parents are being terminated too.
    """
    now = dialect.now_ms()
    count = 0
    async for below in _levels(conn, root_id):
        doomed = [wid for wid, status in below if status.value in _OPEN]
        if doomed:
            stmt = (
                sa.update(workflows)
                .where(workflows.c.id.in_(doomed), workflows.c.status.in_(_OPEN))
                .values(
                    status=WorkflowStatus.TERMINATED.value,
                    complete_time=now,
                    next_execution=None,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
            count += (await conn.execute(stmt)).rowcount
    return count
