"""WorkflowRun: executes one claimed workflow until it has nothing to do right now.

Ready pointers run concurrently as tasks. Each finished activation is committed on its
own, fenced by the claim's token, in one transaction with its data change (a diff
applied to the latest data) and the pointers it creates. The in-memory state is only
updated after the commit succeeds, so it always equals what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from wfe_core import events as ev
from wfe_core.context import ChildWorkflows, StepContext
from wfe_core.definition import StepDef, WorkflowDefinition
from wfe_core.executor import plan
from wfe_core.executor.data import DEFAULT_MAX_PAYLOAD_BYTES, validation_message
from wfe_core.executor.step_runner import StepRunner
from wfe_core.executor.transition import Transition, TransitionBuilder
from wfe_core.models import (
    Claim,
    EventSubscription,
    ExecutionPointer,
    PointerStatus,
    StepCommit,
    WorkflowRecord,
    WorkflowState,
    WorkflowStatus,
)
from wfe_core.ports import LifecyclePublisher, PersistenceProvider
from wfe_core.retry import DEFAULT_RETRY, RetryPolicy

log = logging.getLogger("wfe.executor")

Resolver = Callable[[WorkflowRecord], Awaitable["WorkflowDefinition | None"]]
"""Finds the definition a claimed workflow runs with; ``None`` when the host has none.

It raises :class:`DefinitionUnavailable` when the workflow's definition can never be
had (its stored source cannot be rebuilt): the workflow is then FAILED with the reason.
"""

_UNRESOLVED: Any = None


class DefinitionUnavailable(Exception):
    """A workflow's definition cannot be rebuilt (from its stored source, say); the
    message says why and becomes the FAILED workflow's error."""


@dataclass
class RunServices:
    """What a run needs from its host."""

    persistence: PersistenceProvider
    lifecycle: LifecyclePublisher
    children: ChildWorkflows | None = None
    default_retry: RetryPolicy = DEFAULT_RETRY
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    on_finished: Callable[[WorkflowRecord], None] | None = None
    """Called with the finished workflow's record, as stored by the commit that
    finished it (no read needed: a waiter in this process gets it at once)."""
    max_recovery_attempts: int | None = 5


class WorkflowRun:
    """One claimed workflow, run to its next resting point."""

    def __init__(
        self,
        claim: Claim,
        resolve: Resolver,
        services: RunServices,
        state: WorkflowState | None = None,
    ) -> None:
        self.claim = claim
        self._loaded = state  # read with the claim's batch; else the run reads it
        self.resolve = resolve
        self.definition: WorkflowDefinition = _UNRESOLVED
        self.services = services
        self.unsaved: set[str] = set()  # genesis pointers not yet written
        self.next_wake: int | None = None
        # Stored data that no longer validates, or a definition that cannot be rebuilt.
        self.load_failure: str | None = None
        self.record: WorkflowRecord | None = None
        self.pointers: dict[str, ExecutionPointer] = {}
        self.subscriptions: dict[str, EventSubscription] = {}
        self.deliveries: dict[str, tuple[str, str]] = {}  # pointer id -> (event id, sub id)
        self.data: dict[str, Any] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.halted = False  # suspended, finished or failed: start nothing new
        self.released = False
        self.finished = False  # committed as COMPLETE, FAILED or TERMINATED
        self.in_flight: set[str] = set()  # activations started and not yet committed
        self._commit_lock = asyncio.Lock()
        self._data_text = ""  # the stored data and error, as this run's commits left them
        self._error: str | None = None
        self._runner = StepRunner(self)

    @property
    def workflow_id(self) -> str:
        return self.claim.workflow_id

    def now(self) -> int:
        return self.services.persistence.now_ms()

    def make_event(self, cls: type[ev.LifecycleEvent], **fields: Any) -> ev.LifecycleEvent:
        # From the record: a run whose definition could not be resolved still reports.
        assert self.record is not None, "events come after the workflow is loaded"
        return cls(
            workflow_id=self.workflow_id,
            definition_id=self.record.definition_id,
            version=self.record.version,
            **fields,
        )

    def event(self, cls: type[ev.LifecycleEvent], **fields: Any) -> None:
        self.services.lifecycle.publish(self.make_event(cls, **fields))

    async def run(self) -> None:
        """Run until nothing is ready; raises ``LeaseLost`` if fenced off."""
        try:
            state = self._loaded or await self.services.persistence.load_state(self.claim)
            self._loaded = None
            self.record = state.record
            self._data_text, self._error = state.record.data, state.record.error
            self.pointers = {p.id: p for p in state.pointers}
            self.subscriptions = {s.pointer_id: s for s in state.subscriptions}
            if not await self._resolve() or not self._load_data():
                await self.fail_unloadable()
                return
            if not self.pointers:
                self._genesis()
            if await self._crash_looping():
                return
            await self._deliver_events()
            await self._loop()
            if not self.released:
                await self.commit(Transition())
        except BaseException:
            await self._cancel_tasks()
            raise

    async def _crash_looping(self) -> bool:
        """Fail a workflow whose hosts keep dying while they run it (poison step)."""
        limit = self.services.max_recovery_attempts
        if limit is None or self.claim.recoveries <= limit:
            return False
        now = self.now()
        steps = sorted({p.step_name for p in self.pointers.values() if plan.is_ready(p, now)})
        message = (
            f"exceeded {limit} recovery attempts: its host died {self.claim.recoveries} "
            f"times in a row while running step(s) {', '.join(map(repr, steps))}"
        )
        log.error("failing workflow %s: %s", self.workflow_id, message)
        self.halted = True
        await self.commit(Transition(status=WorkflowStatus.FAILED, error=message))
        return True

    def _genesis(self) -> None:
        """A new workflow's first pointers, written with its first commit."""
        for pointer in plan.initial_pointers(self.definition, self.now()):
            self.pointers[pointer.id] = pointer
            self.unsaved.add(pointer.id)

    async def _resolve(self) -> bool:
        """Find the definition; ``False`` (with ``load_failure`` set) if it can never be
        had. Raises ``LookupError`` if this host has none (it should not have claimed)."""
        assert self.record is not None
        try:
            definition = await self.resolve(self.record)
        except DefinitionUnavailable as exc:
            self.load_failure = f"definition unavailable: {exc}"
            log.error("failing workflow %s: %s", self.workflow_id, self.load_failure)
            return False
        if definition is None:
            raise LookupError(
                f"definition {self.record.definition_id} "
                f"v{self.record.version} is not registered on this host"
            )
        self.definition = definition
        return True

    def _load_data(self) -> bool:
        assert self.record is not None
        try:
            self.data = json.loads(self.record.data)
            self.definition.data_type.model_validate(self.data)
            return True
        except (ValidationError, ValueError) as exc:
            detail = (
                validation_message(exc, self.definition.data_type)[0]
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            self.load_failure = f"stored data does not match the data model: {detail}"
            return False

    async def fail_unloadable(self) -> None:
        """Fail a workflow whose stored data no longer validates (model changed) or
        whose definition cannot be rebuilt from its stored source."""
        if self.load_failure is not None:
            await self.commit(Transition(status=WorkflowStatus.FAILED, error=self.load_failure))

    async def _loop(self) -> None:
        while True:
            if not self.halted:
                now = self.now()
                for pointer in list(self.pointers.values()):
                    if pointer.id not in self.tasks and plan.is_ready(pointer, now):
                        self.in_flight.add(pointer.id)
                        self.tasks[pointer.id] = asyncio.create_task(
                            self._runner.execute(pointer.id), name=f"wfe-step-{pointer.step_name}"
                        )
            if not self.tasks:
                return
            done, _ = await asyncio.wait(self.tasks.values(), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                self.tasks = {k: t for k, t in self.tasks.items() if t is not task}
                task.result()  # re-raises LeaseLost and bugs

    async def _deliver_events(self) -> None:
        """Attach already-published events to waiting pointers (consumed at their commit)."""
        waiting = [
            self.subscriptions[p.id]
            for p in self.pointers.values()
            if p.status is PointerStatus.WAITING
            and not p.event_published
            and p.id in self.subscriptions
        ]
        if not waiting:
            return
        found = await self.services.persistence.find_events(self.workflow_id, waiting)
        for sub in waiting:
            event = found.get(sub.id)
            if event is None:
                continue
            pointer = self.pointers[sub.pointer_id]
            pointer.event_published, pointer.event_data = True, event.data
            self.deliveries[pointer.id] = (event.id, sub.id)

    async def _cancel_tasks(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(BaseException):
                await task
        self.tasks.clear()

    @property
    def committing(self) -> bool:
        """A commit is being written (its outcome is not applied yet)."""
        return self._commit_lock.locked()

    def others_running(self, pointer_id: str | None) -> bool:
        return any(k != pointer_id for k in self.tasks)

    async def commit(self, transition: Transition, pointer_id: str | None = None) -> None:
        """Write one transition (fenced), then apply it to the in-memory state."""
        async with self._commit_lock:
            if self.finished:
                # Ended meanwhile (end_workflow, a failure elsewhere): what a step still
                # running then did is dropped, as the stored workflow has ended too.
                return
            builder = TransitionBuilder(self, transition, pointer_id)
            step_commit, new_data = builder.build()
            status = await self._write(step_commit)
            self._apply(step_commit, new_data, status)
            self.in_flight.discard(pointer_id or "")
        for event in transition.events:
            self.services.lifecycle.publish(event)
        self._after_commit(step_commit, status)

    async def _write(self, step_commit: StepCommit) -> WorkflowStatus:
        """Store a commit; a cancellation arriving meanwhile waits for it to finish, so
        a step whose result was being written is not cut off and run again for that."""
        write = asyncio.ensure_future(self.services.persistence.commit(step_commit))
        try:
            return await asyncio.shield(write)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await write  # its outcome is the store's now; the run ends either way
            raise

    def _apply(
        self, commit: StepCommit, new_data: dict[str, Any] | None, status: WorkflowStatus
    ) -> None:
        self.unsaved.clear()
        if new_data is not None:
            self.data = new_data
        if commit.data is not None:
            self._data_text = commit.data
        if commit.error is not None:
            self._error = commit.error
        for pointer in (*commit.new_pointers, *commit.updated_pointers):
            self.pointers[pointer.id] = pointer
        for sub in commit.new_subscriptions:
            self.subscriptions[sub.pointer_id] = sub
        removed = set(commit.removed_subscriptions)
        self.subscriptions = {k: s for k, s in self.subscriptions.items() if s.id not in removed}
        self.released = self.released or commit.release or status.finished
        self.finished = status.finished
        if commit.release:
            self.next_wake = commit.next_execution
        if status is not WorkflowStatus.RUNNABLE or self.released:
            self.halted = True

    def _after_commit(self, commit: StepCommit, status: WorkflowStatus) -> None:
        if status is WorkflowStatus.COMPLETE and commit.status is WorkflowStatus.COMPLETE:
            self.event(ev.WorkflowCompleted)
        elif status is WorkflowStatus.FAILED and commit.status is WorkflowStatus.FAILED:
            self.event(ev.WorkflowFailed, error=commit.error or "")
        elif commit.status is WorkflowStatus.SUSPENDED:
            self.event(ev.WorkflowSuspended)
        elif commit.status is WorkflowStatus.TERMINATED:
            self.event(ev.WorkflowTerminated)
        if status.finished and self.services.on_finished is not None:
            self.services.on_finished(self._finished_record(commit, status))

    def _finished_record(self, commit: StepCommit, status: WorkflowStatus) -> WorkflowRecord:
        """The row the finishing commit left (only the lease holder writes it, so the
        loaded record plus this run's commits is what is stored)."""
        assert self.record is not None
        return self.record.model_copy(
            update={
                "status": status,
                "data": self._data_text,
                "error": self._error,
                "complete_time": commit.complete_time,
                "next_execution": None,
                "lease_owner": None,
                "lease_expires_at": None,
                "recoveries": 0,
            }
        )

    def context(self, pointer: ExecutionPointer, data: BaseModel) -> StepContext[Any]:
        return StepContext(
            data=data,
            workflow_id=self.workflow_id,
            definition_id=self.definition.id,
            version=self.definition.version,
            step_name=pointer.step_name,
            pointer_id=pointer.id,
            attempt=pointer.attempt,
            item=pointer.context_item,
            persistence_data=pointer.persistence_data,
            event_data=pointer.event_data,
            event_published=pointer.event_published,
            previous_outcome=self._previous_outcome(pointer),
            _children=self.services.children,
        )

    def _previous_outcome(self, pointer: ExecutionPointer) -> Any:
        previous = self.pointers.get(pointer.predecessor_id or "")
        return None if previous is None else previous.outcome

    def retry_policy(self, step: StepDef) -> RetryPolicy:
        return step.retry or self.definition.default_retry or self.services.default_retry

    def timeout_of(self, step: StepDef) -> float | None:
        return step.timeout if step.timeout is not None else self.definition.default_timeout


__all__ = ["DefinitionUnavailable", "Resolver", "RunServices", "WorkflowRun"]
