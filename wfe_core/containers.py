"""Container step bodies: each runs child branches through ``ExecutionResult.branch``
and keeps its progress in its own persistence data, so it resumes after a crash."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from wfe_core.context import StepContext
from wfe_core.errors import SagaRolledBack
from wfe_core.result import ExecutionResult
from wfe_core.step import StepBody

ItemsFn = Callable[[StepContext[Any]], Any]
CondFn = Callable[[StepContext[Any]], bool]


class Parallel(StepBody):
    """Runs its branches once (each ``do`` of a ``parallel`` block), then proceeds."""

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        if ctx.persistence_data is None:
            return ExecutionResult.branch([ctx.item], data={"branched": True})
        return ExecutionResult.next()


class If(StepBody):
    """Runs its branch once when the condition holds, then proceeds."""

    condition: CondFn | None = None

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        assert self.condition is not None
        if ctx.persistence_data is None and self.condition(ctx):
            return ExecutionResult.branch([ctx.item], data={"branched": True})
        return ExecutionResult.next()


class While(StepBody):
    """Runs its branch again and again while the condition holds."""

    condition: CondFn | None = None

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        assert self.condition is not None
        if self.condition(ctx):
            rounds = (ctx.persistence_data or {}).get("rounds", 0) + 1
            return ExecutionResult.branch([ctx.item], data={"rounds": rounds})
        return ExecutionResult.next()


class ForEach(StepBody):
    """Runs its branch once per item: all at once, or one after another."""

    items: ItemsFn | None = None
    parallel: bool = True

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        assert self.items is not None
        state = ctx.persistence_data
        if state is None:
            values = list(self.items(ctx))
            if not values:
                return ExecutionResult.next()
            if self.parallel:
                return ExecutionResult.branch(values, data={"done": True})
            return ExecutionResult.branch(values[:1], data={"items": values, "index": 1})
        if self.parallel or state["index"] >= len(state["items"]):
            return ExecutionResult.next()
        index = state["index"]
        return ExecutionResult.branch(
            [state["items"][index]], data={"items": state["items"], "index": index + 1}
        )


Duration = float | timedelta | Callable[[StepContext[Any]], "float | timedelta"]


def seconds_of(duration: Duration, ctx: StepContext[Any], what: str) -> float:
    """A duration given as seconds, a timedelta or a function of the context."""
    value = duration(ctx) if callable(duration) else duration
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"{what} must not be negative, got {seconds:g}s")
    return seconds


class Decide(StepBody):
    """Runs the branch whose value equals the selector's (or the previous step's
    outcome); the ``otherwise`` branch when none does; then proceeds."""

    selector: ItemsFn | None = None
    routes: Sequence[tuple[Any, Sequence[int]]] = ()
    otherwise: Sequence[int] = ()

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        if ctx.persistence_data is not None:
            return ExecutionResult.next()
        value = self.selector(ctx) if self.selector is not None else ctx.previous_outcome
        for index, (expected, roots) in enumerate(self.routes):
            if expected == value:
                return ExecutionResult.branch([ctx.item], data={"branch": index}, steps=roots)
        if self.otherwise:
            return ExecutionResult.branch(
                [ctx.item], data={"branch": "otherwise"}, steps=self.otherwise
            )
        return ExecutionResult.next()


class Schedule(StepBody):
    """Waits a stored time, then runs its branch once. The chain does not wait for it:
    the builder links the next step beside it, not after it."""

    delay: Duration = 0.0

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        state = ctx.persistence_data
        if state is None:
            seconds = seconds_of(self.delay, ctx, "schedule delay")
            return ExecutionResult.sleep(seconds, data={"phase": "waiting"})
        if state["phase"] == "waiting":
            return ExecutionResult.branch([ctx.item], data={"phase": "running"})
        return ExecutionResult.next()


class Recur(StepBody):
    """Runs its branch, waits ``interval`` after each round, and stops (proceeds) once
    ``until`` holds; ``until`` is checked before every round."""

    interval: Duration = 0.0
    until: CondFn | None = None

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        assert self.until is not None
        state = ctx.persistence_data or {"phase": "waiting", "round": 0}
        if self.until(ctx):
            return ExecutionResult.next()
        if state["phase"] == "running":
            seconds = seconds_of(self.interval, ctx, "recur interval")
            return ExecutionResult.sleep(seconds, data={**state, "phase": "waiting"})
        round_ = state["round"] + 1
        return ExecutionResult.branch([ctx.item], data={"phase": "running", "round": round_})


COMPENSATED = "compensated"
"""The outcome of a saga that rolled back and was told to carry on."""


class Saga(StepBody):
    """Runs its branch; when a step inside fails for good, runs the compensations the
    executor planned (one at a time, newest first), then fails with
    :class:`SagaRolledBack` (or proceeds with outcome ``"compensated"``)."""

    resume_after_compensation: bool = False

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        state = ctx.persistence_data
        if state is None:
            return ExecutionResult.branch([ctx.item], data={"phase": "running"})
        if "failed" not in state:
            return ExecutionResult.next()
        undo, index = state["undo"], state["index"]
        if index < len(undo):
            step_id, item = undo[index]
            data = {**state, "index": index + 1}
            return ExecutionResult.branch([item], data=data, steps=[step_id])
        if self.resume_after_compensation:
            return ExecutionResult.outcome(COMPENSATED)
        raise SagaRolledBack(ctx.workflow_id, ctx.step_name, state["error"])


class EndWorkflow(StepBody):
    """Completes the workflow at once; unfinished steps elsewhere are cancelled."""

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        return ExecutionResult(ends_workflow=True)
