"""Helpers shared by the provider contract tests (plain functions, no fixtures)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from wfe_core.models import (
    Claim,
    EventSubscription,
    ExecutionPointer,
    NewWorkflow,
    StepCommit,
    WorkflowRecord,
)
from wfe_core.ports.backend import Backend

DEFINITION = "contract-flow"
ELIGIBLE = [(DEFINITION, 1)]
LONG_LEASE = 30.0
# Short real leases: the SQL stores compare with the database clock, which a test
# cannot move, so expiry is reached by sleeping past it.
SHORT_LEASE = 0.3
PAST_SHORT_LEASE = 0.5
# Stored times come from the store's clock; this only catches unit mistakes
# (seconds for milliseconds, a zero), not latency.
CLOCK_SLACK_MS = 5_000


def new_id(prefix: str = "") -> str:
    """A fresh id; ``prefix`` lets a test control the ids' sort order."""
    return f"{prefix}{uuid.uuid4()}"


def pointer(pointer_id: str | None = None, step_id: int = 0, **fields: Any) -> ExecutionPointer:
    """A pending pointer with the given fields."""
    return ExecutionPointer(
        id=pointer_id or new_id("p-"), step_id=step_id, step_name=f"step-{step_id}", **fields
    )


def new_workflow(
    *,
    definition_id: str = DEFINITION,
    version: int = 1,
    data: Any = None,
    pointers: list[ExecutionPointer] | None = None,
    **fields: Any,
) -> NewWorkflow:
    """A workflow to create, with one pending pointer unless told otherwise."""
    return NewWorkflow(
        id=fields.pop("id", None) or new_id("wf-"),
        definition_id=definition_id,
        version=version,
        data=json.dumps({"n": 0} if data is None else data),
        pointers=[pointer()] if pointers is None else pointers,
        **fields,
    )


async def create(backend: Backend, **fields: Any) -> WorkflowRecord:
    """Create a workflow (see :func:`new_workflow`) and return its record."""
    record, created = await backend.persistence.create_workflow(new_workflow(**fields))
    assert created
    return record


async def claim_only(backend: Backend, workflow_id: str, owner: str = "host-a", **kw: Any) -> Claim:
    """Claim and return the lease on exactly ``workflow_id`` (the only due workflow)."""
    claims = await backend.queue.claim(
        owner, kw.get("limit", 10), kw.get("lease", LONG_LEASE), kw.get("eligible", ELIGIBLE)
    )
    assert [c.workflow_id for c in claims] == [workflow_id]
    return claims[0]


def commit_for(claim: Claim, **fields: Any) -> StepCommit:
    """A commit made under ``claim``'s lease."""
    return StepCommit(workflow_id=claim.workflow_id, owner=claim.owner, token=claim.token, **fields)


def subscription(
    workflow_id: str, name: str = "paid", key: str = "order-1", as_of: int = 0
) -> EventSubscription:
    """A subscription of a fresh pointer of ``workflow_id`` to the event (name, key)."""
    return EventSubscription(
        id=new_id("sub-"),
        workflow_id=workflow_id,
        pointer_id=new_id("p-"),
        event_name=name,
        event_key=key,
        as_of=as_of,
    )


def plain(record: WorkflowRecord) -> dict[str, Any]:
    """A record as a dict with its data parsed, so JSON formatting does not matter."""
    dumped = record.model_dump()
    dumped["data"] = json.loads(record.data)
    return dumped


async def snapshot(backend: Backend, workflow_id: str) -> tuple[dict[str, Any], list[Any]]:
    """Everything readable about a workflow, to check that nothing was written."""
    record = await backend.persistence.get_workflow(workflow_id)
    pointers = await backend.persistence.get_pointers(workflow_id)
    return plain(record), [p.model_dump() for p in pointers]
