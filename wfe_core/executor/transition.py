"""Turn one pointer's transition into a fenced StepCommit for the store."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wfe_core.events import LifecycleEvent
from wfe_core.executor import plan, saga
from wfe_core.executor.data import encode
from wfe_core.merge import Patch, apply
from wfe_core.models import (
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    PointerStatus,
    StepCommit,
    WorkflowStatus,
)

if TYPE_CHECKING:
    from wfe_core.executor.run import WorkflowRun


@dataclass
class Transition:
    """What one activation changes; the builder adds successors and the workflow status."""

    pointer: ExecutionPointer | None = None
    patch: Patch | None = None
    children: list[ExecutionPointer] = field(default_factory=list)
    also_updated: list[ExecutionPointer] = field(default_factory=list)  # e.g. a saga's
    rollback: saga.Rollback | None = None
    ends_workflow: bool = False  # cancel everything else unfinished
    subscription: EventSubscription | None = None
    removed_subscriptions: list[str] = field(default_factory=list)
    delivered_event: str | None = None
    error_record: ExecutionError | None = None
    status: WorkflowStatus | None = None
    error: str | None = None
    events: list[LifecycleEvent] = field(default_factory=list)  # published after the commit


class TransitionBuilder:
    """Computes the full commit for a transition against the run's current state."""

    def __init__(self, run: WorkflowRun, transition: Transition, pointer_id: str | None) -> None:
        self.run = run
        self.t = transition
        self.pointer_id = pointer_id
        self.now = run.now()

    def build(self) -> tuple[StepCommit, dict[str, Any] | None]:
        t, run = self.t, self.run
        pointers = dict(run.pointers)
        updated = [t.pointer] if t.pointer is not None else []
        updated += t.also_updated
        for pointer in updated:
            pointers[pointer.id] = pointer
        updated += self._cancellations(pointers)
        if t.pointer is not None and t.status is None:
            self._stop_if_rolling_back(t.pointer, pointers)
        new = list(t.children)
        if t.pointer is not None and t.pointer.ended and t.status is None:
            if not plan.rolling_back(t.pointer, pointers):
                new += plan.successors(run.definition, t.pointer, list(pointers.values()), self.now)
            updated += self._resumed_parents(t.pointer, pointers, new)
        for pointer in new:
            pointers[pointer.id] = pointer
        updated = list({p.id: p for p in updated}.values())  # the last copy of each wins
        new, updated = self._split_unsaved(new, updated, pointers)
        new_data = self._new_data()
        status = self._status(pointers)
        commit = StepCommit(
            workflow_id=run.workflow_id,
            owner=run.claim.owner,
            token=run.claim.token,
            data=None if new_data is None else encode(new_data, run.services.max_payload_bytes),
            status=status,
            error=t.error,
            new_pointers=new,
            updated_pointers=updated,
            new_subscriptions=[t.subscription] if t.subscription else [],
            removed_subscriptions=list(t.removed_subscriptions),
            delivered_events=[t.delivered_event] if t.delivered_event else [],
            errors=[t.error_record] if t.error_record else [],
            complete_time=self.now if status is not None and status.finished else None,
            has_parent=run.record is None or run.record.parent_id is not None,
            has_subscriptions=self._subscribed_after(t),
        )
        self._schedule(commit, pointers)
        return commit, new_data

    def _subscribed_after(self, t: Transition) -> bool:
        """Whether any subscription is left once this transition is stored (the run's
        subscriptions are the stored ones: only its commits add or remove them)."""
        if t.subscription is not None:
            return True
        removed = set(t.removed_subscriptions)
        return any(sub.id not in removed for sub in self.run.subscriptions.values())

    def _split_unsaved(
        self,
        new: list[ExecutionPointer],
        updated: list[ExecutionPointer],
        pointers: dict[str, ExecutionPointer],
    ) -> tuple[list[ExecutionPointer], list[ExecutionPointer]]:
        """The first commit of a new workflow also inserts its genesis pointers."""
        unsaved = self.run.unsaved
        if not unsaved:
            return new, updated
        genesis = [pointers[pid] for pid in unsaved]
        return genesis + new, [p for p in updated if p.id not in unsaved]

    def _new_data(self) -> dict[str, Any] | None:
        patch = self.t.patch
        if patch is None or patch.empty:
            return None
        merged: dict[str, Any] = apply(self.run.data, patch)
        return merged

    def _cancellations(self, pointers: dict[str, ExecutionPointer]) -> list[ExecutionPointer]:
        """Computed here, under the run's commit lock, so that no other activation's
        commit lands between deciding what to cancel and cancelling it."""
        t, run = self.t, self.run
        if t.rollback is not None:
            changed = saga.rollback_changes(run, pointers, t.rollback)
        elif t.ends_workflow and t.pointer is not None:
            changed = saga.cancel_unfinished(run, pointers, None, t.pointer.id, running=True)
        else:
            return []
        for pointer in changed:
            pointers[pointer.id] = pointer
            if pointer.id in run.subscriptions and pointer.status is PointerStatus.CANCELLED:
                t.removed_subscriptions.append(run.subscriptions[pointer.id].id)
        return changed

    def _stop_if_rolling_back(
        self, pointer: ExecutionPointer, pointers: dict[str, ExecutionPointer]
    ) -> None:
        """A step that was already running when its saga began rolling back keeps what
        it completed (it will be compensated) but starts nothing more: no sleep, wait or
        branch of its own."""
        if pointer.ended or not plan.rolling_back(pointer, pointers):
            return
        pointer.status, pointer.end_time = PointerStatus.CANCELLED, self.now
        pointer.sleep_until = None
        self.t.children, self.t.subscription = [], None

    def _resumed_parents(
        self,
        ended: ExecutionPointer,
        pointers: dict[str, ExecutionPointer],
        new: list[ExecutionPointer],
    ) -> list[ExecutionPointer]:
        """The innermost waiting container whose whole branch has ended becomes ready to
        run again (containers a rolling-back saga cancelled are passed through)."""
        if new:
            return []
        for scope_id in ended.scope:
            parent = pointers.get(scope_id)
            if parent is None:
                return []
            if parent.status is PointerStatus.WAITING_CHILDREN:
                if not plan.branch_done(parent, pointers.values()):
                    return []
                resumed = copy.deepcopy(parent)
                resumed.status = PointerStatus.PENDING
                pointers[resumed.id] = resumed
                return [resumed]
            if not parent.ended:
                return []
        return []

    def _status(self, pointers: dict[str, ExecutionPointer]) -> WorkflowStatus | None:
        if self.t.status is not None:
            return self.t.status
        if plan.all_ended(pointers.values()):
            return WorkflowStatus.COMPLETE
        return None

    def _schedule(self, commit: StepCommit, pointers: dict[str, ExecutionPointer]) -> None:
        """Keep the lease while work remains now; otherwise release with the next wake time."""
        if commit.status is not None and commit.status is not WorkflowStatus.RUNNABLE:
            commit.release = not self.run.others_running(self.pointer_id)
            commit.next_execution = plan.next_wake(pointers.values())
            return
        running = self.run.others_running(self.pointer_id)
        ready = not self.run.halted and any(
            plan.is_ready(p, self.now) and (p.id == self.pointer_id or p.id not in self.run.tasks)
            for p in pointers.values()
        )
        if running or ready:
            commit.next_execution = 0
            return
        commit.release = True
        commit.next_execution = plan.next_wake(pointers.values())
