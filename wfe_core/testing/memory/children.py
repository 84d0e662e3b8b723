"""Sub-workflows in the in-memory store: the child-finished event and the terminate
cascade, with the SQL stores' semantics (see :mod:`wfe_sql.children`).

Called from inside an atomic memory operation (no ``await`` in between), so each runs
in the same "transaction" as the write that finishes the workflow.
"""

from __future__ import annotations

from wfe_core.errors import InvalidStateTransition, NotFound
from wfe_core.models import CHILD_FINISHED_EVENT, ChildFinished, WorkflowRecord, WorkflowStatus
from wfe_core.testing.memory import events
from wfe_core.testing.memory.state import MemoryState

_OPEN = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})


def check_parent(state: MemoryState, parent_id: str) -> None:
    """Refuse a child of a missing or finished parent: it would escape the terminate
    cascade (which has run, or will never run) and run as an orphan."""
    parent = state.workflows.get(parent_id)
    if parent is None:
        raise NotFound(parent_id, "parent of the new workflow")
    if parent.status not in _OPEN:
        raise InvalidStateTransition(parent_id, "start a child of", parent.status.value)


def publish_child_finished(state: MemoryState, record: WorkflowRecord) -> None:
    """Publish the child-finished event of a workflow that just finished, if it has a
    parent (waking the workflows waiting on it)."""
    if record.parent_id is not None:
        data = ChildFinished.of(record).model_dump_json()
        events.publish_event(state, CHILD_FINISHED_EVENT, record.id, data)


def terminate_descendants(state: MemoryState, root_id: str) -> int:
    """TERMINATE every RUNNABLE or SUSPENDED workflow below ``root_id`` (through
    finished ones too), clearing their leases; returns how many.

    They publish no child-finished event: their parents are being terminated too.
    """
    below: dict[str, list[WorkflowRecord]] = {}
    for record in state.workflows.values():
        if record.parent_id is not None:
            below.setdefault(record.parent_id, []).append(record)
    now, count = state.now_ms(), 0
    seen, level = {root_id}, [root_id]
    while level:
        found = [r for parent in level for r in below.get(parent, []) if r.id not in seen]
        seen.update(r.id for r in found)
        for record in found:
            if record.status in _OPEN:
                record.status = WorkflowStatus.TERMINATED
                record.complete_time = now
                record.next_execution = None
                # The token stays: it only ever grows, so a later claim still fences.
                record.lease_owner = None
                record.lease_expires_at = None
                count += 1
        level = [r.id for r in found]
    return count
