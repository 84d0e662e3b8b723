"""The fenced writes of a lease holder: load a claimed workflow, commit a step.

Every statement here is conditional on ``(id, lease_owner, lease_token)``: a host whose
lease was taken over (its token is no longer current) cannot read as the owner nor
write, and gets :class:`wfe_core.errors.LeaseLost`.

A step commit is idempotent: it stamps the workflow row with its own commit id, and a
second run of the same prepared commit (a retry after a COMMIT whose outcome was
unknown) finds its stamp and writes nothing, instead of failing on the rows the first
run inserted or being refused because that run released the lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from wfe_core.errors import LeaseLost, ProviderError
from wfe_core.models import (
    FINISHED_STATUSES,
    Claim,
    EventSubscription,
    ExecutionPointer,
    StepCommit,
    WorkflowState,
    WorkflowStatus,
)
from wfe_sql import children, rows
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import SqlDialect
from wfe_sql.events import keep_due_for_events
from wfe_sql.schema import (
    UNFINISHED_SQL,
    deliveries,
    errors,
    pointers,
    subscriptions,
    workflows,
)
from wfe_sql.statements import prepared
from wfe_sql.workflows import append_pointers, select_pointers, update_pointer


def _is_owner(workflow_id: str, owner: str, token: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        workflows.c.id == workflow_id,
        workflows.c.lease_owner == owner,
        workflows.c.lease_token == token,
    )


async def load_state(conn: SqlConnection, claim: Claim) -> WorkflowState:
    """The record, pointers and subscriptions of a workflow we hold; else LeaseLost."""
    stmt = sa.select(workflows).where(_is_owner(claim.workflow_id, claim.owner, claim.token))
    row = (await conn.execute(stmt)).mappings().first()
    if row is None:
        raise LeaseLost(claim.workflow_id, claim.token)
    subs = sa.select(subscriptions).where(subscriptions.c.workflow_id == claim.workflow_id)
    return WorkflowState(
        record=rows.workflow_record(row),
        pointers=await select_pointers(conn, claim.workflow_id),
        subscriptions=[
            rows.subscription(sub)
            for sub in (
                await conn.execute(subs.order_by(subscriptions.c.as_of, subscriptions.c.id))
            ).mappings()
        ],
    )


async def load_states(
    conn: SqlConnection, dialect: SqlDialect, claims: Sequence[Claim]
) -> dict[str, WorkflowState]:
    """:func:`load_state` of many claims at once; stale claims are left out."""
    held = {c.workflow_id: c for c in claims}
    records = {}
    stmt = prepared(
        dialect,
        "load_workflows",
        lambda: sa.select(workflows).where(dialect.in_values(workflows.c.id, "ids")),
    )
    for row in (await conn.execute(stmt, {"ids": dialect.values_param(list(held))})).mappings():
        claim = held[row["id"]]
        if (row["lease_owner"], row["lease_token"]) == (claim.owner, claim.token):
            records[claim.workflow_id] = rows.workflow_record(row)
    if not records:
        return {}
    kept = {"ids": dialect.values_param(list(records))}
    found_pointers: dict[str, list[ExecutionPointer]] = {i: [] for i in records}
    stmt = prepared(
        dialect,
        "load_pointers",
        lambda: (
            sa.select(pointers.c.workflow_id, pointers.c.body)
            .where(dialect.in_values(pointers.c.workflow_id, "ids"))
            .order_by(pointers.c.workflow_id, pointers.c.position)
        ),
    )
    for workflow_id, body in await conn.execute(stmt, kept):
        found_pointers[workflow_id].append(rows.pointer(body))
    found_subs: dict[str, list[EventSubscription]] = {i: [] for i in records}
    stmt = prepared(
        dialect,
        "load_subscriptions",
        lambda: (
            sa.select(subscriptions)
            .where(dialect.in_values(subscriptions.c.workflow_id, "ids"))
            .order_by(subscriptions.c.as_of, subscriptions.c.id)
        ),
    )
    for sub in (await conn.execute(stmt, kept)).mappings():
        found_subs[sub["workflow_id"]].append(rows.subscription(sub))
    return {
        i: WorkflowState(record=r, pointers=found_pointers[i], subscriptions=found_subs[i])
        for i, r in records.items()
    }


@dataclass(frozen=True)
class PreparedCommit:
    """A step commit checked and serialised, so its transaction holds only SQL."""

    commit: StepCommit
    commit_id: str
    """Stamped on the workflow row: a retry of this commit recognises that it landed."""
    new_pointers: list[dict[str, Any]]
    updated_pointers: list[dict[str, Any]]
    event_keys: list[tuple[str, str]]
    """The (event name, key) pairs of the new subscriptions, and the workflow's own
    child-finished key if the commit finishes it; sorted (lock order)."""


@dataclass(frozen=True)
class CommitResult:
    """What a step commit left: the status, the database time, whether it is due."""

    status: WorkflowStatus
    db_now: int
    due: bool
    woke: bool = False
    """Whether it (may have) made another workflow due: a parent, by the child-finished
    event."""


def prepare_commit(commit: StepCommit) -> PreparedCommit:
    """Check and serialise a step commit before any transaction opens.

    Raises:
        InvalidData: the data is not JSON, or a pointer cannot be stored as JSON.
        ProviderError: a new subscription belongs to another workflow.
    """
    workflow_id = commit.workflow_id
    if commit.data is not None:
        rows.check_json(commit.data, f"data of workflow {workflow_id}")
    strangers = [sub.id for sub in commit.new_subscriptions if sub.workflow_id != workflow_id]
    if strangers:
        raise ProviderError(
            f"subscriptions {strangers} belong to another workflow than {workflow_id}"
        )
    event_keys = {(sub.event_name, sub.event_key) for sub in commit.new_subscriptions}
    if commit.status in FINISHED_STATUSES and commit.has_parent:
        # A child's finishing commit publishes its parent's event: the lock must come
        # before the row lock (see wfe_sql.children). A parentless workflow skips it.
        event_keys.add(children.finished_key(workflow_id))
    return PreparedCommit(
        commit=commit,
        commit_id=uuid.uuid4().hex,
        new_pointers=[rows.pointer_values(workflow_id, p) for p in commit.new_pointers],
        updated_pointers=[rows.pointer_values(workflow_id, p) for p in commit.updated_pointers],
        event_keys=sorted(event_keys),
    )


def workflow_changes(commit: StepCommit, commit_id: str) -> tuple[dict[str, Any], bool]:
    """The workflow-row assignments of a step commit (plain values) and whether it
    finishes the workflow (which also stamps the completion time: the commit's, else
    the database's)."""
    # A commit is progress: the crash-loop count starts over (see WorkflowStore.commit).
    values: dict[str, Any] = {
        "next_execution": commit.next_execution,
        "last_commit": commit_id,
        "recoveries": 0,
    }
    if commit.data is not None:
        values["data"] = commit.data
    if commit.error is not None:
        values["error"] = commit.error
    # RUNNABLE (or no status) keeps the stored status, so that a suspension made
    # while the step ran survives its commit.
    if commit.status is not None and commit.status is not WorkflowStatus.RUNNABLE:
        values["status"] = commit.status.value
    finishing = commit.status in FINISHED_STATUSES
    if finishing:
        values["next_execution"] = None
        if commit.complete_time is not None:
            values["complete_time"] = commit.complete_time
    if commit.release or finishing:
        values.update(lease_owner=None, lease_expires_at=None)
    return values, finishing


def _update_statement(dialect: SqlDialect, columns: tuple[str, ...], finishing: bool) -> sa.Update:
    """The fenced workflow-row update setting ``columns`` (bound as ``set_<column>``)."""
    now = dialect.now_ms()
    values: dict[str, Any] = {c: sa.bindparam(f"set_{c}") for c in columns}
    if finishing and "complete_time" not in values:
        values["complete_time"] = now
    return (
        sa.update(workflows)
        .where(
            workflows.c.id == sa.bindparam("w_id"),
            workflows.c.lease_owner == sa.bindparam("w_owner"),
            workflows.c.lease_token == sa.bindparam("w_token"),
            sa.or_(*(workflows.c.status == status for status in UNFINISHED_SQL)),
            workflows.c.last_commit.is_distinct_from(sa.bindparam("w_commit")),
        )
        .values(values)
        .returning(workflows.c.status, now.label("db_now"), workflows.c.parent_id)
    )


async def update_workflow(
    conn: SqlConnection, dialect: SqlDialect, prepared_commit: PreparedCommit
) -> tuple[WorkflowStatus, int, str | None] | None:
    """Write the workflow row of a step commit if we hold the lease and this commit
    has not landed yet; ``None`` if nothing matched (fenced off, or landed).

    Runs first in the commit transaction (after the event-key locks), so a fenced-off
    commit writes nothing. Returns the status after the write, the database time and
    the parent's id (so that only a child's finishing commit reads its row again).
    """
    commit = prepared_commit.commit
    values, finishing = workflow_changes(commit, prepared_commit.commit_id)
    columns = tuple(sorted(values))
    stmt = prepared(
        dialect,
        ("update_workflow", columns, finishing),
        lambda: _update_statement(dialect, columns, finishing),
    )
    params = {f"set_{c}": v for c, v in values.items()}
    params.update(
        w_id=commit.workflow_id,
        w_owner=commit.owner,
        w_token=commit.token,
        w_commit=prepared_commit.commit_id,
    )
    row = (await conn.execute(stmt, params)).first()
    if row is None:
        return None
    return WorkflowStatus(row.status), int(row.db_now), row.parent_id


async def landed_commit(
    conn: SqlConnection, dialect: SqlDialect, prepared: PreparedCommit
) -> CommitResult | None:
    """What an earlier run of this very commit left, if it landed; else ``None``.

    The workflow row still carries the commit's id unless a later commit (by another
    owner: ours are serialised) has replaced it, and then our lease is gone anyway.
    """
    now = dialect.now_ms()
    stmt = sa.select(workflows.c.status, workflows.c.next_execution, now.label("db_now")).where(
        workflows.c.id == prepared.commit.workflow_id,
        workflows.c.last_commit == prepared.commit_id,
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    status = WorkflowStatus(row.status)
    due = status is WorkflowStatus.RUNNABLE and row.next_execution is not None
    # A finishing commit may have woken a parent; its wake-up landed with it, but this
    # process's signal was never set, so say so again (a spare wake-up costs one poll).
    woke = status in FINISHED_STATUSES
    return CommitResult(status=status, db_now=int(row.db_now), due=due, woke=woke)


async def write_pointers(
    conn: SqlConnection, dialect: SqlDialect, prepared: PreparedCommit
) -> None:
    """Overwrite the commit's updated pointers and append its new ones.

    Raises:
        ProviderError: an updated pointer was never stored.
    """
    workflow_id = prepared.commit.workflow_id
    for values in prepared.updated_pointers:
        if not await update_pointer(conn, values):
            raise ProviderError(
                f"cannot update unknown pointer {values['id']!r} of workflow {workflow_id}"
            )
    await append_pointers(conn, dialect, prepared.new_pointers)


async def write_subscriptions(conn: SqlConnection, commit: StepCommit) -> None:
    """Add the commit's new subscriptions and drop the removed ones."""
    if commit.removed_subscriptions:
        await conn.execute(
            sa.delete(subscriptions).where(
                subscriptions.c.workflow_id == commit.workflow_id,
                subscriptions.c.id.in_(commit.removed_subscriptions),
            )
        )
    if commit.new_subscriptions:
        await conn.execute(
            sa.insert(subscriptions),
            [rows.subscription_values(sub) for sub in commit.new_subscriptions],
        )


async def write_deliveries(conn: SqlConnection, dialect: SqlDialect, commit: StepCommit) -> None:
    """Record the events this commit consumed; a second delivery violates the key."""
    for event_id in commit.delivered_events:
        await conn.execute(
            sa.insert(deliveries).values(
                workflow_id=commit.workflow_id, event_id=event_id, delivered_at=dialect.now_ms()
            )
        )


async def write_errors(conn: SqlConnection, commit: StepCommit) -> None:
    """Append the commit's execution errors."""
    if commit.errors:
        await conn.execute(
            sa.insert(errors),
            [rows.error_values(uuid.uuid4().hex, error) for error in commit.errors],
        )


async def apply_commit(
    conn: SqlConnection, dialect: SqlDialect, prepared: PreparedCommit
) -> CommitResult:
    """Every write of one step transition, workflow row first (fencing); a no-op
    returning the stored outcome if this commit already landed.

    Raises:
        LeaseLost: we no longer hold the workflow's lease (and the commit never landed).
    """
    commit = prepared.commit
    # Taken before the row lock of update_workflow, as publish takes it before its
    # row locks: the same order everywhere, so the two cannot deadlock. They include
    # the child-finished key of a finishing commit, which publishes that event.
    await dialect.lock_event_keys(conn, prepared.event_keys)
    updated = await update_workflow(conn, dialect, prepared)
    if updated is None:
        landed = await landed_commit(conn, dialect, prepared)
        if landed is None:
            raise LeaseLost(commit.workflow_id, commit.token)
        return landed
    status, db_now, parent_id = updated
    await write_pointers(conn, dialect, prepared)
    await write_subscriptions(conn, commit)
    await write_deliveries(conn, dialect, commit)
    await write_errors(conn, commit)
    due = commit.next_execution is not None
    if status is WorkflowStatus.RUNNABLE and commit.has_subscriptions:
        due = await keep_due_for_events(conn, dialect, commit.workflow_id) or due
    woke = False
    if status in FINISHED_STATUSES and parent_id is not None:
        # After the writes above, so the event carries the data this commit wrote.
        woke = await children.publish_child_finished_of(conn, dialect, commit.workflow_id) > 0
    return CommitResult(status=status, db_now=db_now, due=due, woke=woke)
