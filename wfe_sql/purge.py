"""Deleting finished workflows and the rows that hang off them, in bounded batches."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from wfe_core.models import WorkflowStatus
from wfe_sql.connection import SqlConnection
from wfe_sql.schema import deliveries, errors, pointers, subscriptions, workflows

PURGE_BATCH = 500
"""Workflows (or events) deleted per transaction, so a purge never holds the write lock long."""

_CHILD_TABLES = (pointers, subscriptions, deliveries, errors)


async def select_purgeable(
    conn: SqlConnection,
    older_than_ms: int,
    statuses: frozenset[WorkflowStatus],
    batch: int,
) -> list[str]:
    """Ids of up to ``batch`` workflows in ``statuses`` completed before the time.

    Uses ix_wfe_workflows_completed.
    """
    stmt = (
        sa.select(workflows.c.id)
        .where(
            workflows.c.complete_time < older_than_ms,
            workflows.c.status.in_(sorted(status.value for status in statuses)),
        )
        .order_by(workflows.c.complete_time)
        .limit(batch)
    )
    return list((await conn.execute(stmt)).scalars())


async def delete_workflows(conn: SqlConnection, ids: Sequence[str]) -> int:
    """Delete workflows by id with their pointers, subscriptions, deliveries and errors."""
    for table in _CHILD_TABLES:
        await conn.execute(sa.delete(table).where(table.c.workflow_id.in_(ids)))
    return (await conn.execute(sa.delete(workflows).where(workflows.c.id.in_(ids)))).rowcount
