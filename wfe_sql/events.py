"""Queries on published events, subscriptions and deliveries."""

from __future__ import annotations

import sqlalchemy as sa

from wfe_core.models import Event, EventSubscription, WorkflowStatus
from wfe_sql import rows
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import SqlDialect
from wfe_sql.schema import RUNNABLE_SQL, deliveries, events, subscriptions, workflows


async def insert_event(
    conn: SqlConnection, dialect: SqlDialect, event_id: str, name: str, key: str, data_json: str
) -> Event:
    """Store an event stamped with the database clock."""
    stmt = (
        sa.insert(events)
        .values(id=event_id, name=name, key=key, data=data_json, event_time=dialect.now_ms())
        .returning(*events.c)
    )
    return rows.event((await conn.execute(stmt)).mappings().one())


async def select_event(conn: SqlConnection, event_id: str) -> Event | None:
    """The event with this id, or ``None``; by primary key."""
    row = (await conn.execute(sa.select(events).where(events.c.id == event_id))).mappings().first()
    return None if row is None else rows.event(row)


async def wake_subscribers(conn: SqlConnection, event: Event) -> int:
    """Make due now every RUNNABLE workflow subscribed to the event; returns how many.

    Uses ix_wfe_subscriptions_name_key.
    """
    subscribed = sa.select(subscriptions.c.workflow_id).where(
        subscriptions.c.event_name == event.name,
        subscriptions.c.event_key == event.key,
        subscriptions.c.as_of <= event.event_time,
    )
    # Row locks in id order (PostgreSQL), as group commits and renewals take theirs.
    woken = (
        sa.select(workflows.c.id)
        .where(workflows.c.status == RUNNABLE_SQL, workflows.c.id.in_(subscribed))
        .order_by(workflows.c.id)
        .with_for_update()
    )
    stmt = sa.update(workflows).where(workflows.c.id.in_(woken)).values(next_execution=0)
    return (await conn.execute(stmt)).rowcount


async def keep_due_for_events(conn: SqlConnection, dialect: SqlDialect, workflow_id: str) -> bool:
    """Make a RUNNABLE, idle workflow due now if one of its subscriptions matches an event
    not yet delivered to it; returns whether it did.

    Run by every commit: an event published after the executor last looked, or before
    the commit that adds its subscription, found no subscriber to wake, and a commit
    that leaves the workflow idle must not bury it.
    """
    now = dialect.now_ms()
    pending = (
        sa.select(sa.literal(1))
        .select_from(subscriptions)
        .join(
            events,
            sa.and_(
                events.c.name == subscriptions.c.event_name,
                events.c.key == subscriptions.c.event_key,
                events.c.event_time >= subscriptions.c.as_of,
            ),
        )
        .where(
            subscriptions.c.workflow_id == workflow_id,
            ~sa.exists().where(
                deliveries.c.workflow_id == workflow_id, deliveries.c.event_id == events.c.id
            ),
        )
    )
    stmt = (
        sa.update(workflows)
        .where(
            workflows.c.id == workflow_id,
            workflows.c.status == RUNNABLE_SQL,
            sa.or_(workflows.c.next_execution.is_(None), workflows.c.next_execution > now),
            sa.exists(pending),
        )
        .values(next_execution=0)
    )
    return (await conn.execute(stmt)).rowcount > 0


async def earliest_undelivered(
    conn: SqlConnection, workflow_id: str, sub: EventSubscription
) -> Event | None:
    """The first event matching a subscription not yet delivered to the workflow.

    Uses ix_wfe_events_name_key_time.
    """
    delivered = sa.select(deliveries.c.event_id).where(deliveries.c.workflow_id == workflow_id)
    stmt = (
        sa.select(events)
        .where(
            events.c.name == sub.event_name,
            events.c.key == sub.event_key,
            events.c.event_time >= sub.as_of,
            events.c.id.not_in(delivered),
        )
        .order_by(events.c.event_time, events.c.id)
        .limit(1)
    )
    row = (await conn.execute(stmt)).mappings().first()
    return None if row is None else rows.event(row)


async def delete_unreachable_events(conn: SqlConnection, older_than_ms: int, batch: int) -> int:
    """Delete up to ``batch`` events before the time that no unfinished workflow can match.

    An unfinished workflow only matches events from its creation on (and a subscription
    from its ``as_of``), so events older than both the oldest unfinished workflow and the
    oldest subscription are unreachable. Uses ix_wfe_events_time.
    """
    oldest_open = (
        sa.select(sa.func.min(workflows.c.create_time))
        .where(
            workflows.c.status.in_([WorkflowStatus.RUNNABLE.value, WorkflowStatus.SUSPENDED.value])
        )
        .scalar_subquery()
    )
    earliest_wait = sa.select(sa.func.min(subscriptions.c.as_of)).scalar_subquery()
    doomed = (
        sa.select(events.c.id)
        .where(
            events.c.event_time < older_than_ms,
            events.c.event_time < sa.func.coalesce(oldest_open, older_than_ms),
            events.c.event_time < sa.func.coalesce(earliest_wait, older_than_ms),
        )
        .limit(batch)
    )
    stmt = sa.delete(events).where(events.c.id.in_(doomed))
    return (await conn.execute(stmt)).rowcount
