"""Saga rollback and early endings, as pointer changes added to a transition.

A saga is rolled back in two phases. When a step inside fails for good, its commit
records the failure on the saga pointer and cancels what inside is idle
(:func:`rollback_changes`, computed under the run's commit lock); activations in flight
finish, and nothing new starts inside (see ``plan.rolling_back``). Once the branch has
wholly ended the saga runs again, and :func:`plan_compensation` fixes, in that run's
commit, the list of compensations its body then runs one by one, so a crash resumes
the same list where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wfe_core.executor import plan
from wfe_core.models import ExecutionPointer, PointerStatus

if TYPE_CHECKING:
    from wfe_core.executor.run import WorkflowRun


def enclosing_saga(run: WorkflowRun, pointer: ExecutionPointer) -> ExecutionPointer | None:
    """The innermost saga around ``pointer``, if any."""
    for scope_id in pointer.scope:
        container = run.pointers.get(scope_id)
        if container is not None and run.definition.steps[container.step_id].saga:
            return container
    return None


@dataclass(frozen=True)
class Rollback:
    """A transition's request to start rolling ``saga_id`` back because ``failed_id``
    failed for good; applied when the commit is built, against the current state."""

    saga_id: str
    failed_id: str
    reason: str


def cancel_unfinished(
    run: WorkflowRun,
    pointers: Mapping[str, ExecutionPointer],
    inside: str | None,
    spare: str,
    *,
    running: bool = False,
) -> list[ExecutionPointer]:
    """Cancelled copies of every unfinished pointer (inside the container ``inside``, or
    anywhere when None) except ``spare``. An activation in flight (started, not yet
    committed) is left to finish unless ``running`` (its commit will then be dropped)."""
    now = run.now()
    cancelled = []
    for other in pointers.values():
        if other.ended or other.id == spare or (other.id in run.in_flight and not running):
            continue
        if inside is not None and inside not in other.scope:
            continue
        copy = other.model_copy(deep=True)
        copy.status, copy.end_time, copy.sleep_until = PointerStatus.CANCELLED, now, None
        cancelled.append(copy)
    return cancelled


def rollback_changes(
    run: WorkflowRun, pointers: Mapping[str, ExecutionPointer], rollback: Rollback
) -> list[ExecutionPointer]:
    """The saga marked as failed, and what inside it is idle, cancelled."""
    saga = pointers[rollback.saga_id]
    state = saga.persistence_data if isinstance(saga.persistence_data, dict) else {}
    if "failed" in state:
        return []  # a concurrent step already started the rollback
    marked = saga.model_copy(deep=True)
    marked.persistence_data = {**state, "failed": rollback.failed_id, "error": rollback.reason}
    return [marked, *cancel_unfinished(run, pointers, saga.id, spare=rollback.failed_id)]


def plan_compensation(run: WorkflowRun, saga: ExecutionPointer) -> list[ExecutionPointer]:
    """On a rolled-back saga's first run, store the compensations to run in its state
    and return the undone steps marked COMPENSATED, to commit with it."""
    state = saga.persistence_data
    if not isinstance(state, dict) or "failed" not in state or "undo" in state:
        return []
    definition = run.definition
    targets = plan.compensations(definition, saga, state["failed"], run.pointers)
    undo = [[definition.steps[p.step_id].compensation, p.context_item] for p in targets]
    saga.persistence_data = {**state, "undo": undo, "index": 0}
    marks = []
    for target in targets:
        if target.status is PointerStatus.COMPLETE:
            done = target.model_copy(deep=True)
            done.status = PointerStatus.COMPENSATED
            marks.append(done)
    return marks
