"""Built-in step bodies the builder inserts: delay, event wait, inline functions."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from wfe_core.context import StepContext
from wfe_core.result import ExecutionResult
from wfe_core.step import StepBody

KeyFn = Callable[[StepContext[Any]], str]
EventOutput = Callable[[StepContext[Any], Any], Any]


class Delay(StepBody):
    """Sleeps once for a stored duration, then proceeds."""

    seconds: float = 0.0

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        if ctx.persistence_data is None:
            return ExecutionResult.sleep(self.seconds, data=True)
        return ExecutionResult.next()


class WaitFor(StepBody):
    """Waits for the event (name, key); hands its data to the output mapping."""

    event_name: str = ""
    event_key: str | KeyFn = ""
    output: EventOutput | None = None

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        if ctx.persistence_data is None:
            key = self.event_key(ctx) if callable(self.event_key) else self.event_key
            if not isinstance(key, str):
                raise TypeError(f"event key must be a string, got {type(key).__name__}")
            return ExecutionResult.wait_for_event(self.event_name, key, data={"key": key})
        if self.output is not None:
            self.output(ctx, ctx.event_data)
        return ExecutionResult.next()


class InlineStep(StepBody):
    """Runs a closure (sync or async) given to ``then_fn``; a None return means next."""

    fn: Callable[[StepContext[Any]], Any] | None = None

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        assert self.fn is not None
        result = self.fn(ctx)
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, ExecutionResult) else ExecutionResult.next()


def configured(cls: type[StepBody], **attrs: Any) -> Callable[[], StepBody]:
    """A factory that makes ``cls()`` with the given attributes set."""

    def make() -> StepBody:
        body = cls()
        for name, value in attrs.items():
            setattr(body, name, value)
        return body

    return make


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
