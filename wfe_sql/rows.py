"""Conversions between table rows and the records of :mod:`wfe_core.models`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic_core import PydanticSerializationError
from sqlalchemy import RowMapping

from wfe_core.errors import InvalidData
from wfe_core.models import (
    DefinitionRecord,
    DefinitionSourceRecord,
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    WorkflowRecord,
    WorkflowStatus,
)
from wfe_sql import schema

WORKFLOW_COLUMNS = tuple(schema.workflows.c)


def workflow_record(row: RowMapping | Mapping[str, Any]) -> WorkflowRecord:
    """A workflow row as a record."""
    return WorkflowRecord(
        id=row["id"],
        definition_id=row["definition_id"],
        version=row["version"],
        reference=row["reference"],
        idempotency_key=row["idempotency_key"],
        status=WorkflowStatus(row["status"]),
        data=row["data"],
        error=row["error"],
        create_time=row["create_time"],
        complete_time=row["complete_time"],
        next_execution=row["next_execution"],
        lease_owner=row["lease_owner"],
        lease_token=row["lease_token"],
        lease_expires_at=row["lease_expires_at"],
        recoveries=row["recoveries"],
        parent_id=row["parent_id"],
        source_digest=row["source_digest"],
    )


def check_json(text: str, what: str) -> None:
    """Refuse text that is not JSON before it reaches a JSON column.

    Raises:
        InvalidData: ``text`` does not parse as JSON.
    """
    try:
        json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidData(f"{what} is not valid JSON: {exc}", value=text) from exc


def pointer_values(workflow_id: str, pointer: ExecutionPointer) -> dict[str, Any]:
    """Column values of a pointer row (without its position).

    Raises:
        InvalidData: a field of the pointer cannot be stored as JSON.
    """
    try:
        body = pointer.model_dump_json()
    except (PydanticSerializationError, ValueError) as exc:
        raise InvalidData(
            f"pointer {pointer.id!r} of workflow {workflow_id} cannot be stored as JSON: {exc}",
            value=pointer,
        ) from exc
    return {
        "id": pointer.id,
        "workflow_id": workflow_id,
        "step_id": pointer.step_id,
        "step_name": pointer.step_name,
        "status": pointer.status.value,
        "body": body,
    }


def pointer(body: str) -> ExecutionPointer:
    """A pointer from its stored JSON body."""
    return ExecutionPointer.model_validate_json(body)


def subscription_values(sub: EventSubscription) -> dict[str, Any]:
    """Column values of a subscription row."""
    return sub.model_dump()


def subscription(row: RowMapping) -> EventSubscription:
    """A subscription row as a record."""
    return EventSubscription.model_validate(dict(row))


def event(row: RowMapping) -> Event:
    """An event row as a record (its data parsed from JSON)."""
    return Event(
        id=row["id"],
        name=row["name"],
        key=row["key"],
        data=json.loads(row["data"]),
        event_time=row["event_time"],
    )


def error_values(error_id: str, error: ExecutionError) -> dict[str, Any]:
    """Column values of an execution-error row."""
    return {"id": error_id, **error.model_dump()}


def definition(row: RowMapping) -> DefinitionRecord:
    """A definition row as a record (its data schema parsed from JSON)."""
    return DefinitionRecord(
        definition_id=row["definition_id"],
        version=row["version"],
        fingerprint=row["fingerprint"],
        data_schema=json.loads(row["data_schema"]),
        registered_at=row["registered_at"],
        source_digest=row["source_digest"],
    )


def source_values(source: DefinitionSourceRecord, created_at: Any) -> dict[str, Any]:
    """Column values of a definition-source row (its config as JSON text)."""
    return {
        "digest": source.digest,
        "kind": source.kind,
        "text": source.text,
        "config": json.dumps(source.config, sort_keys=True),
        "created_at": created_at,
    }


def source(row: RowMapping) -> DefinitionSourceRecord:
    """A definition-source row as a record (its config parsed from JSON)."""
    return DefinitionSourceRecord(
        digest=row["digest"],
        kind=row["kind"],
        text=row["text"],
        config=json.loads(row["config"]),
        created_at=row["created_at"],
    )
