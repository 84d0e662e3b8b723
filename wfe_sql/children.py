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
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from wfe_core.models import (
    CHILD_FINISHED_EVENT,
    ChildFinished,
    WorkflowRecord,
    WorkflowStatus,
)
from wfe_sql.dialect import SqlDialect
from wfe_sql.events import insert_event, wake_subscribers
from wfe_sql.schema import workflows
from wfe_sql.workflows import select_workflow

_OPEN = (WorkflowStatus.RUNNABLE.value, WorkflowStatus.SUSPENDED.value)


def finished_key(workflow_id: str) -> tuple[str, str]:
    """The (event name, key) of a workflow's child-finished event (its lock key too)."""
    return (CHILD_FINISHED_EVENT, workflow_id)


async def publish_child_finished(
    conn: AsyncConnection, dialect: SqlDialect, record: WorkflowRecord
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
    conn: AsyncConnection, dialect: SqlDialect, workflow_id: str
) -> int:
    """:func:`publish_child_finished` for a workflow this transaction just finished."""
    record = await select_workflow(conn, workflow_id)
    return 0 if record is None else await publish_child_finished(conn, dialect, record)


async def _children(
    conn: AsyncConnection, parent_ids: Sequence[str]
) -> list[tuple[str, WorkflowStatus]]:
    """The id and status of every workflow started by one of these; uses
    ix_wfe_workflows_parent."""
    stmt = sa.select(workflows.c.id, workflows.c.status).where(
        workflows.c.parent_id.in_(parent_ids)
    )
    return [(row.id, WorkflowStatus(row.status)) for row in await conn.execute(stmt)]


async def open_descendants(conn: AsyncConnection, root_id: str) -> list[str]:
    """Every RUNNABLE or SUSPENDED workflow below ``root_id`` by ``parent_id`` (through
    finished ones too: a failed child may have left a grandchild running), level by
    level."""
    seen, level = {root_id}, [root_id]
    found: list[str] = []
    while level:
        below = [(wid, status) for wid, status in await _children(conn, level) if wid not in seen]
        seen.update(wid for wid, _ in below)
        found.extend(wid for wid, status in below if status.value in _OPEN)
        level = [wid for wid, _ in below]
    return found


async def lock_for_finish(
    conn: AsyncConnection, dialect: SqlDialect, workflow_id: str, *, cascade: bool
) -> None:
    """Take, before any row lock, the event-key locks of a control operation that
    finishes ``workflow_id`` (and, with ``cascade``, terminates its open descendants)."""
    keys = {finished_key(workflow_id)}
    if cascade:
        keys.update(finished_key(wid) for wid in await open_descendants(conn, workflow_id))
    await dialect.lock_event_keys(conn, sorted(keys))


async def terminate_descendants(conn: AsyncConnection, dialect: SqlDialect, root_id: str) -> int:
    """TERMINATE every RUNNABLE or SUSPENDED workflow below ``root_id``, clearing their
    leases (which fences off their owners) as the root's was; returns how many.

    They publish no child-finished event: their parents are being terminated too.
    """
    doomed = await open_descendants(conn, root_id)
    if not doomed:
        return 0
    now = dialect.now_ms()
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
    return (await conn.execute(stmt)).rowcount
