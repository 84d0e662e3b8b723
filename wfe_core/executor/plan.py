"""Pure planning over execution pointers: what is ready, what comes next, when to wake.

No I/O here: the run loop asks these functions and commits what they return.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from wfe_core.definition import StepDef, WorkflowDefinition
from wfe_core.models import ExecutionPointer, PointerStatus

# Pointers a crash left RUNNING are re-run: the body is at-least-once.
_RUNNABLE = frozenset({PointerStatus.PENDING, PointerStatus.SLEEPING, PointerStatus.RUNNING})


def new_pointer_id() -> str:
    return uuid.uuid4().hex


def make_pointer(
    step: StepDef,
    now_ms: int,
    *,
    scope: Sequence[str] = (),
    context_item: Any = None,
    predecessor_id: str | None = None,
) -> ExecutionPointer:
    """A fresh activation of ``step``; ``delay``/``scheduled_at`` become a stored wake time."""
    sleep_until = None
    if step.delay:
        sleep_until = now_ms + int(step.delay * 1000)
    if step.scheduled_at is not None:
        sleep_until = max(sleep_until or 0, step.scheduled_at)
    return ExecutionPointer(
        id=new_pointer_id(),
        step_id=step.id,
        step_name=step.name,
        sleep_until=sleep_until,
        scope=list(scope),
        context_item=context_item,
        predecessor_id=predecessor_id,
    )


def initial_pointers(definition: WorkflowDefinition, now_ms: int) -> list[ExecutionPointer]:
    return [make_pointer(definition.steps[i], now_ms) for i in definition.initial_steps]


def is_ready(pointer: ExecutionPointer, now_ms: int) -> bool:
    """True when the pointer should run (or time out) now."""
    due = pointer.sleep_until is None or pointer.sleep_until <= now_ms
    if pointer.status in _RUNNABLE:
        return due
    if pointer.status is PointerStatus.WAITING:
        return pointer.event_published or (pointer.sleep_until is not None and due)
    return False


def next_wake(pointers: Iterable[ExecutionPointer]) -> int | None:
    """The earliest stored time at which something becomes due; None if only events can."""
    times = [
        p.sleep_until if p.sleep_until is not None else 0
        for p in pointers
        if p.status in _RUNNABLE or (p.status is PointerStatus.WAITING and p.sleep_until)
    ]
    return min(times) if times else None


def all_ended(pointers: Iterable[ExecutionPointer]) -> bool:
    return all(p.ended for p in pointers)


def successors(
    definition: WorkflowDefinition,
    ended: ExecutionPointer,
    pointers: Sequence[ExecutionPointer],
    now_ms: int,
) -> list[ExecutionPointer]:
    """Pointers to create now that ``ended`` is done (chain edges and DAG dependents)."""
    step = definition.steps[ended.step_id]
    created = [
        make_pointer(
            definition.steps[edge.next_step],
            now_ms,
            scope=ended.scope,
            context_item=ended.context_item,
            predecessor_id=ended.id,
        )
        for edge in step.next
        if ended.status is PointerStatus.COMPLETE and edge.matches(ended.outcome)
    ]
    done = {p.step_id for p in pointers if p.ended and not p.scope}
    existing = {p.step_id for p in pointers if not p.scope}
    for dependent_id in definition.dependents.get(step.id, ()):
        dependent = definition.steps[dependent_id]
        if dependent_id in existing or not _deps_done(dependent, done):
            continue
        created.append(make_pointer(dependent, now_ms, predecessor_id=ended.id))
        existing.add(dependent_id)
    return created


def _deps_done(step: StepDef, done: set[int]) -> bool:
    if not all(dep in done for dep in step.depends_on):
        return False
    return not step.depends_on_any or any(dep in done for dep in step.depends_on_any)


def branch_children(
    definition: WorkflowDefinition,
    parent: ExecutionPointer,
    values: Sequence[Any],
    now_ms: int,
    steps: Sequence[int] | None = None,
) -> list[ExecutionPointer]:
    """One pointer per value per child branch of ``parent``'s step (or per step of
    ``steps``, which must be the step's children or compensations inside it)."""
    step = definition.steps[parent.step_id]
    scope = [parent.id, *parent.scope]
    chosen = step.children if steps is None else tuple(steps)
    return [
        make_pointer(
            definition.steps[child],
            now_ms,
            scope=scope,
            context_item=value,
            predecessor_id=parent.id,
        )
        for value in values
        for child in chosen
    ]


def branch_done(parent: ExecutionPointer, pointers: Iterable[ExecutionPointer]) -> bool:
    """True when every pointer inside ``parent``'s scope has ended."""
    return all(p.ended for p in pointers if parent.id in p.scope)


def rolling_back(pointer: ExecutionPointer, pointers: Mapping[str, ExecutionPointer]) -> bool:
    """True when an enclosing saga has had a step fail and waits for its branch to stop
    before compensating: nothing more may start inside it."""
    for scope_id in pointer.scope:
        saga = pointers.get(scope_id)
        if saga is not None and saga.status is PointerStatus.WAITING_CHILDREN:
            state = saga.persistence_data
            if isinstance(state, dict) and "failed" in state and "undo" not in state:
                return True
    return False


def compensations(
    definition: WorkflowDefinition,
    saga: ExecutionPointer,
    failed_id: str,
    pointers: Mapping[str, ExecutionPointer],
) -> list[ExecutionPointer]:
    """The pointers a rolled-back saga must undo, in the order to undo them.

    The failed step first (it may have partly happened), then every completed step
    with a compensation, most recently finished first. Steps undone by an earlier
    attempt of the saga are COMPENSATED already and stay out.
    """

    def has_undo(p: ExecutionPointer) -> bool:
        return definition.steps[p.step_id].compensation is not None

    # Pointers are kept in creation order: it breaks ties between steps that finished
    # within the same millisecond, in favour of the one created later.
    done = [
        (p.end_time or 0, position, p)
        for position, p in enumerate(pointers.values())
        if saga.id in p.scope and p.status is PointerStatus.COMPLETE and has_undo(p)
    ]
    done.sort(key=lambda entry: entry[:2], reverse=True)
    failed = pointers.get(failed_id)
    first = [failed] if failed is not None and has_undo(failed) else []
    return first + [p for _, _, p in done]
