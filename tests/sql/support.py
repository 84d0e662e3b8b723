"""Helpers of the SQL-provider tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa

from wfe_core.models import (
    Claim,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    NewWorkflow,
    PointerStatus,
    StepCommit,
)
from wfe_core.ports.backend import Backend
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database
from wfe_sql.schema import deliveries, errors, pointers, subscriptions, workflows

DEFINITION = "sql-flow"
ELIGIBLE = [(DEFINITION, 1)]


def new_workflow(**fields: Any) -> NewWorkflow:
    """A workflow of :data:`DEFINITION` v1 with one pending pointer."""
    workflow_id = fields.pop("id", None) or f"wf-{uuid.uuid4()}"
    return NewWorkflow(
        id=workflow_id,
        definition_id=DEFINITION,
        version=1,
        data=json.dumps({"n": 0}),
        **(
            {"pointers": [ExecutionPointer(id=f"p-{uuid.uuid4()}", step_id=0, step_name="first")]}
            | fields
        ),
    )


async def table_rows(db: Database, workflow_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row about the workflow in every table (error ids, random, left out)."""

    async def read(conn: SqlConnection) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for table, key in (
            (workflows, workflows.c.id),
            (pointers, pointers.c.workflow_id),
            (subscriptions, subscriptions.c.workflow_id),
            (deliveries, deliveries.c.workflow_id),
            (errors, errors.c.workflow_id),
        ):
            result = await conn.execute(sa.select(table).where(key == workflow_id))
            dumped = [
                {k: v for k, v in row.items() if k != "id" or table is not errors}
                for row in result.mappings()
            ]
            found[table.name] = sorted(dumped, key=lambda row: json.dumps(row, sort_keys=True))
        return found

    return await db.read("dump a workflow", read)


async def claimed_workflow(backend: Backend) -> tuple[Claim, str]:
    """A new workflow claimed by "host", and the id of its first pointer."""
    new = new_workflow()
    record, _ = await backend.persistence.create_workflow(new)
    [claim] = await backend.queue.claim("host", 1, 30.0, ELIGIBLE)
    assert claim.workflow_id == record.id
    return claim, new.pointers[0].id


def full_commit(
    backend: Backend, claim: Claim, first_pointer: str, event_id: str, *, release: bool
) -> StepCommit:
    """A commit that writes every kind of row: data, pointers, a subscription, a
    delivery, an error."""
    now = backend.persistence.now_ms()
    done = ExecutionPointer(
        id=first_pointer, step_id=0, step_name="first", status=PointerStatus.COMPLETE, end_time=now
    )
    waiting = ExecutionPointer(
        id=f"p-{uuid.uuid4()}",
        step_id=1,
        step_name="wait",
        status=PointerStatus.WAITING,
        event_name="paid",
        event_key="k",
        event_as_of=0,
    )
    return StepCommit(
        workflow_id=claim.workflow_id,
        owner=claim.owner,
        token=claim.token,
        data=json.dumps({"n": 1}),
        next_execution=None if release else 0,
        release=release,
        new_pointers=[waiting],
        updated_pointers=[done],
        new_subscriptions=[
            EventSubscription(
                id=f"sub-{uuid.uuid4()}",
                workflow_id=claim.workflow_id,
                pointer_id=waiting.id,
                event_name="paid",
                event_key="k",
                as_of=0,
            )
        ],
        delivered_events=[event_id],
        errors=[
            ExecutionError(
                workflow_id=claim.workflow_id,
                pointer_id=first_pointer,
                step_name="first",
                attempt=1,
                error_time=now,
                message="boom",
            )
        ],
    )
