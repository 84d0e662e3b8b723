"""WorkflowInstance: what users get back from get/list/wait_for_completion."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from wfe_core.models import WorkflowRecord, WorkflowStatus, ms_to_datetime


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
