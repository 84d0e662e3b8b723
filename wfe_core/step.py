"""Step bodies: a ``StepBody`` subclass or a plain ``async def f(ctx)``."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from wfe_core.result import ExecutionResult

if TYPE_CHECKING:
    from wfe_core.context import StepContext


class StepBody:
    """Base class of step bodies. Subclass it and implement :meth:`run`.

    A new instance is made for every attempt; input mappings set its attributes before
    ``run``. The hooks are optional.
    """

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        raise NotImplementedError(f"{type(self).__name__} must implement run(ctx)")

    def is_retryable(self, error: BaseException) -> bool:
        """Return False to fail at once, skipping the remaining retry attempts."""
        return True

    async def on_success(self, ctx: StepContext[Any]) -> None:
        """Called after the step finished (proceeded), before its commit."""

    async def on_failure(self, ctx: StepContext[Any], error: BaseException) -> None:
        """Called once the step has failed its last attempt, before its commit."""


StepFunction: TypeAlias = Callable[["StepContext[Any]"], Awaitable[ExecutionResult | None]]
StepSpec: TypeAlias = type[StepBody] | StepFunction | StepBody


class FunctionStep(StepBody):
    """Adapts ``async def f(ctx)`` to a StepBody; returning None means "next"."""

    def __init__(self, fn: StepFunction) -> None:
        self._fn = fn

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        result = await self._fn(ctx)
        return ExecutionResult.next() if result is None else result


def step_factory(spec: StepSpec) -> Callable[[], StepBody]:
    """Return a callable making a fresh body per attempt; reject what cannot be a step."""
    if inspect.isclass(spec) and issubclass(spec, StepBody):
        return spec
    if isinstance(spec, StepBody):
        return lambda: spec
    if callable(spec):
        if not inspect.iscoroutinefunction(spec) and not inspect.iscoroutinefunction(
            getattr(spec, "__call__", None)  # noqa: B004 - async callable objects count
        ):
            raise TypeError(f"step function {_name_of(spec)} must be 'async def f(ctx)'")
        fn = cast(StepFunction, spec)
        return lambda: FunctionStep(fn)
    raise TypeError(f"{spec!r} is not a step: pass a StepBody subclass or an async function")


def _name_of(spec: Any) -> str:
    return str(getattr(spec, "__qualname__", None) or getattr(spec, "__name__", None) or spec)


def step_name_of(spec: StepSpec) -> str:
    """The default name of a step: its class or function name."""
    if isinstance(spec, StepBody) and not isinstance(spec, type):
        return type(spec).__name__
    return str(getattr(spec, "__name__", None) or type(spec).__name__)
