"""Built-in step bodies the builder inserts: delay, event wait, inline functions.
The containers are in :mod:`wfe_core.containers`."""

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
