"""Helpers of the SQL-provider tests."""

from __future__ import annotations

import json
import uuid
from typing import Any

from wfe_core.models import ExecutionPointer, NewWorkflow

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
        pointers=[ExecutionPointer(id=f"p-{uuid.uuid4()}", step_id=0, step_name="first")],
        **fields,
    )
