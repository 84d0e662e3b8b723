"""Runs one pointer's step body and turns what happened into a Transition."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import TYPE_CHECKING, Any

from wfe_core import events as ev
from wfe_core.context import StepContext
from wfe_core.definition import StepDef
from wfe_core.errors import StepTimeout
from wfe_core.executor import plan, saga
from wfe_core.executor.data import encode_value, to_jsonable
from wfe_core.executor.transition import Transition
from wfe_core.merge import Patch, diff
from wfe_core.models import (
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    PointerStatus,
    WorkflowStatus,
    datetime_to_ms,
    ms_to_datetime,
)
from wfe_core.result import ExecutionResult
from wfe_core.retry import ErrorKind, FailureAction
from wfe_core.step import StepBody

if TYPE_CHECKING:
    from wfe_core.executor.run import WorkflowRun

log = logging.getLogger("wfe.executor")


class StepRunner:
    """Executes pointers of one run; each call ends in exactly one commit."""

    def __init__(self, run: WorkflowRun) -> None:
        self.run = run
        self._undo_marks: dict[str, list[ExecutionPointer]] = {}  # saga pointer -> marked

    async def execute(self, pointer_id: str) -> None:
        run = self.run
        pointer = run.pointers[pointer_id].detached()
        if pointer.step_id >= len(run.definition.steps):
            message = (
                f"pointer {pointer.id} names step {pointer.step_id}, which the definition lacks"
            )
            await run.commit(Transition(status=WorkflowStatus.FAILED, error=message), pointer_id)
            return
        step = run.definition.steps[pointer.step_id]
        if pointer.status is PointerStatus.WAITING and not pointer.event_published:
            timeout = run.timeout_of(step) or 0.0
            await self._failed(pointer, step, None, StepTimeout(step.name, timeout), None)
            return
        pointer.status = PointerStatus.RUNNING
        pointer.start_time = pointer.start_time or run.now()
        if step.saga:
            self._undo_marks[pointer.id] = saga.plan_compensation(run, pointer)
        snapshot = copy.deepcopy(run.data)
        # Validated from a copy of its own: a model keeps ``Any`` and extra values as
        # the very objects it was given, and a step changing one in place would change
        # the snapshot too, so the diff would miss the change.
        data = run.definition.data_type.model_validate(copy.deepcopy(snapshot))
        ctx = run.context(pointer, data)
        run.event(
            ev.StepStarted, step_name=step.name, pointer_id=pointer.id, attempt=pointer.attempt
        )
        await self._run_body(pointer, step, ctx, snapshot)

    async def _run_body(
        self,
        pointer: ExecutionPointer,
        step: StepDef,
        ctx: StepContext[Any],
        snapshot: dict[str, Any],
    ) -> None:
        body: StepBody | None = None
        try:
            # The body first: its is_retryable also judges an error raised by run_if.
            body = step.factory()
            if self._should_skip(pointer, step, ctx):
                await self._skip(pointer, step)
                return
            for attribute, value in step.inputs:
                setattr(body, attribute, value(ctx))
            result = await self._call(body, step, ctx)
            self._check_branch(step, result)
            if result.proceed:
                for mapping in step.outputs:
                    mapping(ctx, body)
                await body.on_success(ctx)
            patch = diff(snapshot, to_jsonable(ctx.data))
            result = _checked(result)
        except Exception as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The host cancelled the step (stop, force-cancel) and the body turned
                # that into another error: not a failure of the step, so not recorded.
                raise asyncio.CancelledError from exc
            await self._failed(pointer, step, body, exc, snapshot)
            return
        await self._succeeded(pointer, step, result, patch)

    def _should_skip(self, pointer: ExecutionPointer, step: StepDef, ctx: StepContext[Any]) -> bool:
        first = pointer.persistence_data is None and not pointer.event_published
        return step.run_if is not None and first and not step.run_if(ctx)

    async def _call(self, body: StepBody, step: StepDef, ctx: StepContext[Any]) -> ExecutionResult:
        timeout = self.run.timeout_of(step)
        try:
            async with asyncio.timeout(timeout):
                result: ExecutionResult | None = await body.run(ctx)
        except TimeoutError as exc:
            raise StepTimeout(step.name, timeout or 0.0) from exc
        if result is None:
            return ExecutionResult.next()
        if not isinstance(result, ExecutionResult):
            raise TypeError(f"step returned {type(result).__name__}, not an ExecutionResult")
        return result

    async def _skip(self, pointer: ExecutionPointer, step: StepDef) -> None:
        pointer.status, pointer.end_time = PointerStatus.SKIPPED, self.run.now()
        t = Transition(pointer=pointer, events=[self._event(ev.StepSkipped, pointer)])
        await self.run.commit(t, pointer.id)

    async def _succeeded(
        self, pointer: ExecutionPointer, step: StepDef, result: ExecutionResult, patch: Patch
    ) -> None:
        run, now = self.run, self.run.now()
        marks = self._undo_marks.pop(pointer.id, [])
        t = Transition(pointer=pointer, patch=patch, also_updated=marks)
        self._consume_delivery(pointer, t)
        pointer.persistence_data = result.persistence_data
        pointer.error = None
        if result.proceed:
            pointer.status, pointer.end_time = PointerStatus.COMPLETE, now
            pointer.outcome = result.outcome_value
            t.events.append(self._event(ev.StepCompleted, pointer))
            if result.ends_workflow:
                t.status, t.ends_workflow = WorkflowStatus.COMPLETE, True
        elif result.event_name is not None:
            t.subscription = self._wait(pointer, step, result, now)
            await self._match_published(pointer, t.subscription)
        elif result.branch_values and step.children:
            pointer.status = PointerStatus.WAITING_CHILDREN
            t.children = _branch(run, pointer, result, now)
        else:
            pointer.status = PointerStatus.SLEEPING
            pointer.sleep_until = now + int((result.sleep_for or 0.0) * 1000)
        await run.commit(t, pointer.id)

    def _consume_delivery(self, pointer: ExecutionPointer, t: Transition) -> bool:
        """Record the event that woke ``pointer`` as delivered and drop its subscription,
        in ``t``; False if no event woke it."""
        if pointer.id not in self.run.deliveries:
            return False
        t.delivered_event, removed = self.run.deliveries.pop(pointer.id)
        t.removed_subscriptions.append(removed)
        return True

    def _wait(
        self, pointer: ExecutionPointer, step: StepDef, result: ExecutionResult, now: int
    ) -> EventSubscription:
        run = self.run
        assert run.record is not None and result.event_name is not None
        as_of = (
            datetime_to_ms(result.event_as_of)
            if result.event_as_of is not None
            else run.record.create_time
        )
        timeout = run.timeout_of(step)
        pointer.status = PointerStatus.WAITING
        pointer.event_name, pointer.event_key = result.event_name, result.event_key or ""
        pointer.event_as_of, pointer.event_published, pointer.event_data = as_of, False, None
        pointer.sleep_until = None if timeout is None else now + int(timeout * 1000)
        return EventSubscription(
            id=f"{pointer.id}:{pointer.attempt}",
            workflow_id=run.workflow_id,
            pointer_id=pointer.id,
            event_name=pointer.event_name,
            event_key=pointer.event_key,
            as_of=as_of,
        )

    async def _match_published(self, pointer: ExecutionPointer, sub: EventSubscription) -> None:
        """An event published before the wait began is delivered without another claim."""
        found = await self.run.services.persistence.find_events(self.run.workflow_id, [sub])
        event = found.get(sub.id)
        if event is not None:
            pointer.event_published, pointer.event_data = True, event.data
            self.run.deliveries[pointer.id] = (event.id, sub.id)

    async def _failed(
        self,
        pointer: ExecutionPointer,
        step: StepDef,
        body: StepBody | None,
        exc: Exception,
        snapshot: dict[str, Any] | None,
    ) -> None:
        run, now = self.run, self.run.now()
        text = f"{type(exc).__name__}: {exc}"
        pointer.error = text
        t = Transition(
            pointer=pointer,
            error_record=ExecutionError(
                workflow_id=run.workflow_id,
                pointer_id=pointer.id,
                step_name=step.name,
                attempt=pointer.attempt,
                error_time=now,
                message=text,
            ),
        )
        self._undo_marks.pop(pointer.id, None)
        # The wait is over either way: consume the event that woke the step (a retry
        # waits afresh) and drop the subscription (a timed-out wait has one too).
        if not self._consume_delivery(pointer, t) and pointer.id in run.subscriptions:
            t.removed_subscriptions.append(run.subscriptions[pointer.id].id)
        behavior = step.error_behavior
        around = None if step.compensates else saga.enclosing_saga(run, pointer)
        if behavior is not None and behavior.kind is ErrorKind.COMPENSATE and around is not None:
            await self._final_failure(pointer, step, body, exc, snapshot, t, around)
        elif behavior is not None and behavior.kind is ErrorKind.SUSPEND:
            self._prime_retry(pointer, now, 0.0)
            t.status = WorkflowStatus.SUSPENDED
        elif behavior is not None and behavior.kind is ErrorKind.TERMINATE:
            pointer.status, pointer.end_time = PointerStatus.FAILED, now
            t.status, t.error = WorkflowStatus.TERMINATED, self._final_message(step, pointer, text)
        elif self._retryable(body, exc) and self._attempts_left(step, pointer):
            delay = run.retry_policy(step).backoff.delay(pointer.attempt)
            t.events.append(
                self._event(
                    ev.StepRetrying,
                    pointer,
                    error=text,
                    retry_at=ms_to_datetime(now + int(delay * 1000)),
                )
            )
            self._prime_retry(pointer, now, delay)
            await run.commit(t, pointer.id)
            return
        else:
            await self._final_failure(pointer, step, body, exc, snapshot, t, around)
        t.events.insert(0, self._event(ev.StepFailed, pointer, error=text))
        await run.commit(t, pointer.id)

    async def _final_failure(
        self,
        pointer: ExecutionPointer,
        step: StepDef,
        body: StepBody | None,
        exc: Exception,
        snapshot: dict[str, Any] | None,
        t: Transition,
        around: ExecutionPointer | None,
    ) -> None:
        run = self.run
        pointer.status, pointer.end_time = PointerStatus.FAILED, run.now()
        if body is not None and snapshot is not None:
            t.patch = await self._on_failure_hook(pointer, body, exc, snapshot)
        action = step.on_failure or FailureAction.FAIL_WORKFLOW
        if around is not None and action is not FailureAction.CONTINUE:
            reason = self._final_message(step, pointer, pointer.error or "")
            t.rollback = saga.Rollback(around.id, pointer.id, reason)
        elif action is FailureAction.FAIL_WORKFLOW:
            t.status = WorkflowStatus.FAILED
            t.error = self._final_message(step, pointer, pointer.error or "")

    def _check_branch(self, step: StepDef, result: ExecutionResult) -> None:
        """A container may start its own branches; a saga also compensation steps."""
        if result.branch_steps is None:
            return
        steps = self.run.definition.steps
        unknown = [
            s
            for s in result.branch_steps
            if s not in step.children
            and not (step.saga and 0 <= s < len(steps) and steps[s].compensates)
        ]
        if unknown:
            raise ValueError(f"step {step.name!r} cannot start steps {unknown}: not its branches")

    async def _on_failure_hook(
        self, pointer: ExecutionPointer, body: StepBody, exc: Exception, snapshot: dict[str, Any]
    ) -> Patch | None:
        """Run ``on_failure`` on a fresh copy of the data; its changes are committed."""
        run = self.run
        fresh = copy.deepcopy(snapshot)
        ctx = run.context(pointer, run.definition.data_type.model_validate(fresh))
        try:
            await body.on_failure(ctx, exc)
            return diff(snapshot, to_jsonable(ctx.data))
        except Exception:
            log.exception("on_failure hook of step %r raised", pointer.step_name)
            return None

    def _final_message(self, step: StepDef, pointer: ExecutionPointer, text: str) -> str:
        n = pointer.attempt
        return f"step {step.name!r} failed after {n} attempt{'s' if n != 1 else ''}: {text}"

    def _retryable(self, body: StepBody | None, exc: Exception) -> bool:
        if body is None:
            return True
        try:
            return bool(body.is_retryable(exc))
        except Exception:
            log.exception("is_retryable of step %r raised", type(body).__name__)
            return False

    def _attempts_left(self, step: StepDef, pointer: ExecutionPointer) -> bool:
        if step.on_failure is FailureAction.RETRY_INDEFINITELY:
            return True
        return pointer.attempt < self.run.retry_policy(step).max_attempts

    @staticmethod
    def _prime_retry(pointer: ExecutionPointer, now: int, delay: float) -> None:
        """Start the step over after ``delay``: a retry re-waits, re-sleeps from scratch."""
        pointer.status = PointerStatus.SLEEPING
        pointer.sleep_until = now + int(delay * 1000)
        pointer.attempt += 1
        pointer.persistence_data = None
        pointer.event_name = pointer.event_key = None
        pointer.event_as_of, pointer.event_published, pointer.event_data = None, False, None

    def _event(
        self, cls: type[ev.StepEvent], pointer: ExecutionPointer, **fields: Any
    ) -> ev.LifecycleEvent:
        return self.run.make_event(
            cls,
            step_name=pointer.step_name,
            pointer_id=pointer.id,
            attempt=pointer.attempt,
            **fields,
        )


def _checked(result: ExecutionResult) -> ExecutionResult:
    """Reject results whose saved state cannot be stored, before anything is written."""
    encode_value(result.persistence_data, "persistence data")
    encode_value(result.outcome_value, "outcome")
    return result


def _branch(
    run: WorkflowRun, parent: ExecutionPointer, result: ExecutionResult, now: int
) -> list[ExecutionPointer]:
    values = list(result.branch_values)
    children = plan.branch_children(run.definition, parent, values, now, result.branch_steps)
    parent.children = [c.id for c in children]
    return children
