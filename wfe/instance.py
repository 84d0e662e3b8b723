"""WorkflowInstance: what users get back from get/list/wait_for_completion."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from wfe_core.models import ExecutionPointer, WorkflowRecord, WorkflowStatus, ms_to_datetime


class WorkflowInstance(BaseModel):
    """A workflow instance as stored; ``data`` is typed when the model is known."""

    id: str
    definition_id: str
    version: int
    reference: str | None = None
    status: WorkflowStatus
    data: Any = None
    error: str | None = None
    create_time: datetime
    complete_time: datetime | None = None
    parent_id: str | None = None
    """The workflow whose sub-workflow step started this one, if any."""

    @classmethod
    def from_record(
        cls, record: WorkflowRecord, data_type: type[BaseModel] | None
    ) -> WorkflowInstance:
        raw = json.loads(record.data)
        data: Any = raw
        if data_type is not None:
            try:
                data = data_type.model_validate(raw)
            except ValidationError:
                data = raw  # stored data from an older model: give it back untyped
        created = ms_to_datetime(record.create_time)
        assert created is not None
        return cls(
            id=record.id,
            definition_id=record.definition_id,
            version=record.version,
            reference=record.reference,
            status=record.status,
            data=data,
            error=record.error,
            create_time=created,
            complete_time=ms_to_datetime(record.complete_time),
            parent_id=record.parent_id,
        )


class StepInstance(BaseModel):
    """One activation of a step, as :meth:`WorkflowClient.get_steps` reports it.

    ``attempt`` counts tries (1 = first); ``outcome`` is what the step returned
    (a YAML step: its exit code and captured output); ``error`` is its last error.
    """

    id: str
    name: str
    status: str
    attempt: int
    start_time: datetime | None = None
    end_time: datetime | None = None
    sleep_until: datetime | None = None
    event_name: str | None = None
    event_key: str | None = None
    outcome: Any = None
    error: str | None = None

    @classmethod
    def from_pointer(cls, pointer: ExecutionPointer) -> StepInstance:
        return cls(
            id=pointer.id,
            name=pointer.step_name,
            status=pointer.status.value,
            attempt=pointer.attempt,
            start_time=ms_to_datetime(pointer.start_time),
            end_time=ms_to_datetime(pointer.end_time),
            sleep_until=ms_to_datetime(pointer.sleep_until),
            event_name=pointer.event_name,
            event_key=pointer.event_key,
            outcome=pointer.outcome,
            error=pointer.error,
        )
