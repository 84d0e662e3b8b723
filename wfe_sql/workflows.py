"""Queries on workflow rows and their pointers (outside the fenced step commit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import sqlalchemy as sa

from wfe_core.errors import InvalidStateTransition, NotFound
from wfe_core.models import (
    FINISHED_STATUSES,
    ExecutionPointer,
    NewWorkflow,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowStatus,
)
from wfe_sql import rows
from wfe_sql.connection import SqlConnection
from wfe_sql.dialect import SqlDialect
from wfe_sql.schema import UNFINISHED_SQL, pointers, workflows
from wfe_sql.statements import prepared

_NEW_WORKFLOW_COLUMNS = (
    "id",
    "definition_id",
    "version",
    "reference",
    "idempotency_key",
    "status",
    "data",
    "next_execution",
    "lease_owner",
    "lease_token",
    "recoveries",
    "parent_id",
    "source_digest",
)


def _insert_workflow_statement(dialect: SqlDialect, keyed: bool) -> sa.Insert:
    values: dict[str, Any] = {name: sa.bindparam(name) for name in _NEW_WORKFLOW_COLUMNS}
    values["create_time"] = dialect.now_ms()
    # NULL without a start lease (NULL + NULL), else due by the database clock.
    values["lease_expires_at"] = dialect.now_ms() + sa.bindparam("lease_ms", type_=sa.BigInteger)
    stmt = (
        dialect.insert_ignore(workflows, values) if keyed else sa.insert(workflows).values(values)
    )
    return stmt.returning(*rows.WORKFLOW_COLUMNS)


def _new_workflow_params(new: NewWorkflow) -> dict[str, Any]:
    return {
        "id": new.id,
        "definition_id": new.definition_id,
        "version": new.version,
        "reference": new.reference,
        "idempotency_key": new.idempotency_key,
        "status": WorkflowStatus.RUNNABLE.value,
        "data": new.data,
        "next_execution": new.next_execution,
        "lease_owner": None if new.lease is None else new.lease.owner,
        "lease_ms": None if new.lease is None else max(int(new.lease.seconds * 1000), 1),
        "lease_token": 0 if new.lease is None else 1,
        "recoveries": 0,
        "parent_id": new.parent_id,
        "source_digest": new.source_digest,
    }


async def insert_workflow(
    conn: SqlConnection, dialect: SqlDialect, new: NewWorkflow
) -> WorkflowRecord | None:
    """Insert a RUNNABLE workflow created now; ``None`` if its idempotency key is taken."""
    keyed = new.idempotency_key is not None
    stmt = prepared(
        dialect, ("insert_workflow", keyed), lambda: _insert_workflow_statement(dialect, keyed)
    )
    params = _new_workflow_params(new)
    row = (await conn.execute(stmt, params)).mappings().first()
    return None if row is None else rows.workflow_record(row)


async def insert_workflows(
    conn: SqlConnection, dialect: SqlDialect, news: Sequence[NewWorkflow]
) -> list[WorkflowRecord]:
    """Insert RUNNABLE workflows without idempotency keys in one statement; their
    records in the order given."""
    stmt = prepared(
        dialect, ("insert_workflow", False), lambda: _insert_workflow_statement(dialect, False)
    )
    result = await conn.execute(stmt, [_new_workflow_params(new) for new in news])
    made = {row["id"]: rows.workflow_record(row) for row in result.mappings()}
    return [made[new.id] for new in news]


def locked_in_id_order(dialect: SqlDialect, *where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """The ids bound as ``ids`` (see :meth:`SqlDialect.in_values`) whose rows meet
    ``where``, locked in id order (PostgreSQL; SQLite has no row locks). Every writer of
    many workflow rows locks them through this, so that no two of them deadlock."""
    return (
        sa.select(workflows.c.id)
        .where(dialect.in_values(workflows.c.id, "ids"), *where)
        .order_by(workflows.c.id)
        .with_for_update()
    )


async def select_workflow(conn: SqlConnection, workflow_id: str) -> WorkflowRecord | None:
    """The workflow with this id, or ``None``; by primary key."""
    stmt = sa.select(workflows).where(workflows.c.id == workflow_id)
    row = (await conn.execute(stmt)).mappings().first()
    return None if row is None else rows.workflow_record(row)


async def select_workflows_by_id(
    conn: SqlConnection,
    dialect: SqlDialect,
    workflow_ids: Sequence[str],
    *,
    finished_only: bool,
) -> list[WorkflowRecord]:
    """The workflows with these ids (only finished ones when ``finished_only``)."""

    def build() -> sa.Select[Any]:
        stmt = sa.select(workflows).where(dialect.in_values(workflows.c.id, "ids"))
        if finished_only:
            # NOT IN the unfinished: IN the finished statuses would lead SQLite, without
            # statistics, to drive from the status index and read every finished row.
            stmt = stmt.where(workflows.c.status.not_in(UNFINISHED_SQL))
        return stmt

    stmt = prepared(dialect, ("workflows_by_id", finished_only), build)
    result = await conn.execute(stmt, {"ids": dialect.values_param(workflow_ids)})
    return [rows.workflow_record(row) for row in result.mappings()]


async def select_workflow_by_key(conn: SqlConnection, key: str) -> WorkflowRecord | None:
    """The workflow created with this idempotency key; uses ux_wfe_workflows_idempotency_key."""
    stmt = sa.select(workflows).where(workflows.c.idempotency_key == key)
    row = (await conn.execute(stmt)).mappings().first()
    return None if row is None else rows.workflow_record(row)


async def select_workflows(conn: SqlConnection, query: WorkflowQuery) -> list[WorkflowRecord]:
    """Workflows matching the filters, newest first; uses the ix_wfe_workflows_* indexes."""
    stmt = sa.select(workflows)
    if query.status is not None:
        stmt = stmt.where(workflows.c.status == query.status.value)
    if query.definition_id is not None:
        stmt = stmt.where(workflows.c.definition_id == query.definition_id)
    if query.reference is not None:
        stmt = stmt.where(workflows.c.reference == query.reference)
    stmt = (
        stmt.order_by(workflows.c.create_time.desc(), workflows.c.id.desc())
        .limit(query.limit)
        .offset(query.offset)
    )
    return [rows.workflow_record(row) for row in (await conn.execute(stmt)).mappings()]


async def workflow_exists(conn: SqlConnection, workflow_id: str) -> bool:
    """Whether a workflow with this id exists; by primary key."""
    stmt = sa.select(sa.literal(1)).where(workflows.c.id == workflow_id)
    return (await conn.execute(stmt)).first() is not None


async def select_pointers(conn: SqlConnection, workflow_id: str) -> list[ExecutionPointer]:
    """Every pointer of a workflow in creation order; uses ux_wfe_pointers_workflow_position."""
    stmt = (
        sa.select(pointers.c.body)
        .where(pointers.c.workflow_id == workflow_id)
        .order_by(pointers.c.position)
    )
    return [rows.pointer(body) for body in (await conn.execute(stmt)).scalars()]


def _append_pointers_statement() -> sa.Insert:
    last = (
        sa.select(sa.func.coalesce(sa.func.max(pointers.c.position), -1))
        .where(pointers.c.workflow_id == sa.bindparam("workflow_id"))
        .scalar_subquery()
    )
    return sa.insert(pointers).values(
        id=sa.bindparam("id"),
        workflow_id=sa.bindparam("workflow_id"),
        step_id=sa.bindparam("step_id"),
        step_name=sa.bindparam("step_name"),
        status=sa.bindparam("status"),
        body=sa.bindparam("body"),
        position=last + 1 + sa.bindparam("offset", type_=sa.Integer),
    )


async def append_pointers(
    conn: SqlConnection, dialect: SqlDialect, values: Sequence[Mapping[str, Any]]
) -> None:
    """Insert pointer rows of one workflow after its last one, in the given order, in one
    statement: each position is computed in SQL from the last stored one, not read first.

    Positions only order a workflow's pointers; they may leave gaps (a driver that runs
    the rows one by one sees the earlier ones, one that sends them as one multi-row
    insert does not, and either way they come out increasing and distinct).
    """
    if not values:
        return
    stmt = prepared(dialect, "append_pointers", _append_pointers_statement)
    await conn.execute(stmt, [{**row, "offset": offset} for offset, row in enumerate(values)])


async def insert_pointers(
    conn: SqlConnection, values: Sequence[Mapping[str, Any]], first_position: int
) -> None:
    """Insert pointer rows (see :func:`rows.pointer_values`) at consecutive positions."""
    if values:
        await conn.execute(
            sa.insert(pointers),
            [{**row, "position": first_position + offset} for offset, row in enumerate(values)],
        )


async def update_pointer(conn: SqlConnection, values: Mapping[str, Any]) -> bool:
    """Overwrite a stored pointer row of its workflow; ``False`` if there is none."""
    changes = {k: v for k, v in values.items() if k not in ("id", "workflow_id")}
    stmt = (
        sa.update(pointers)
        .where(pointers.c.id == values["id"], pointers.c.workflow_id == values["workflow_id"])
        .values(changes)
    )
    return (await conn.execute(stmt)).rowcount > 0


async def set_status(
    conn: SqlConnection,
    dialect: SqlDialect,
    workflow_id: str,
    action: str,
    allowed_from: frozenset[WorkflowStatus],
    to: WorkflowStatus,
) -> tuple[WorkflowRecord, int]:
    """Compare-and-set the status of a workflow (suspend, resume, terminate).

    Returns the new record and the database time.
    """
    now = dialect.now_ms()
    values: dict[str, Any] = {"status": to.value}
    if to is WorkflowStatus.RUNNABLE:
        values["next_execution"] = now
    if to in FINISHED_STATUSES:
        # Clearing the lease fences off the owner's next commit.
        values.update(
            complete_time=now,
            next_execution=None,
            lease_owner=None,
            lease_expires_at=None,
        )
    stmt = (
        sa.update(workflows)
        .where(
            workflows.c.id == workflow_id,
            workflows.c.status.in_(sorted(status.value for status in allowed_from)),
        )
        .values(values)
        .returning(*rows.WORKFLOW_COLUMNS, now.label("db_now"))
    )
    row = (await conn.execute(stmt)).mappings().first()
    if row is None:
        await _refuse(conn, workflow_id, action)
    return rows.workflow_record(row), int(row["db_now"])


async def _refuse(conn: SqlConnection, workflow_id: str, action: str) -> NoReturn:
    """Explain why a status change matched no row: unknown id, or a forbidding status."""
    current = await select_workflow(conn, workflow_id)
    if current is None:
        raise NotFound(workflow_id)
    raise InvalidStateTransition(workflow_id, action, current.status.value)
