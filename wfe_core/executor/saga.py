"""Saga rollback and early endings, as pointer changes added to a transition.

A saga is rolled back in two phases. When a step inside fails for good, its commit
records the failure on the saga pointer and cancels what inside is not running
(:func:`start_rollback`); running steps finish, and nothing new starts inside (see
``plan.rolling_back``). Once the branch has wholly ended the saga runs again, and
:func:`plan_compensation` fixes, in that run's commit, the list of compensations its
body then runs one by one, so a crash resumes the same list where it stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wfe_core.executor import plan
from wfe_core.executor.transition import Transition
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


def cancel_unfinished(
    run: WorkflowRun, t: Transition, inside: str | None, spare: str, *, running: bool = False
) -> None:
    """Cancel every unfinished pointer (inside the container ``inside``, or anywhere
    when None), except ``spare``, and drop their waits. Pointers running right now are
    left alone unless ``running`` (their own commits will then be dropped)."""
    now = run.now()
    for other in run.pointers.values():
        if other.ended or other.id == spare or (other.id in run.tasks and not running):
            continue
        if inside is not None and inside not in other.scope:
            continue
        cancelled = other.model_copy(deep=True)
        cancelled.status, cancelled.end_time = PointerStatus.CANCELLED, now
        cancelled.sleep_until = None
        t.also_updated.append(cancelled)
        if other.id in run.subscriptions:
            t.removed_subscriptions.append(run.subscriptions[other.id].id)


def start_rollback(
    run: WorkflowRun,
    saga: ExecutionPointer,
    failed: ExecutionPointer,
    reason: str,
    t: Transition,
) -> None:
    """Record on ``saga`` that ``failed`` failed for good and stop what is idle inside."""
    state = saga.persistence_data if isinstance(saga.persistence_data, dict) else {}
    if "failed" in state:
        return  # a concurrent step already started the rollback
    marked = saga.model_copy(deep=True)
    marked.persistence_data = {**state, "failed": failed.id, "error": reason}
    t.also_updated.append(marked)
    cancel_unfinished(run, t, saga.id, spare=failed.id)


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
