"""The sub-workflow step: start a child workflow, wait for it without holding a worker,
map its typed output back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wfe_core.context import StepContext
from wfe_core.errors import (
    ChildWorkflowFailed,
    DefinitionNotFound,
    InvalidData,
    InvalidStateTransition,
    NotFound,
)
from wfe_core.models import CHILD_FINISHED_EVENT, ChildFinished, WorkflowStatus
from wfe_core.result import ExecutionResult
from wfe_core.step import StepBody

InputFn = Callable[[StepContext[Any]], Any]
OutputFn = Callable[[StepContext[Any], Any], Any]


class SubWorkflow(StepBody):
    """Starts the child once per attempt, then waits for the event its store writes in
    the very transaction that finishes it (so the wait cannot miss it).

    A crash re-run of the same attempt finds the same child (its idempotency key is the
    pointer and attempt); a retry after the child failed starts a fresh child.
    """

    definition_id: str = ""
    version: int | None = None
    input_fn: InputFn | None = None
    output_fn: OutputFn | None = None

    async def run(self, ctx: StepContext[Any]) -> ExecutionResult:
        if ctx.persistence_data is None:
            data = self.input_fn(ctx) if self.input_fn is not None else None
            child = await ctx.children.start(
                self.definition_id,
                data,
                key=f"sub:{ctx.workflow_id}:{ctx.pointer_id}:{ctx.attempt}",
                parent_id=ctx.workflow_id,
                version=self.version,
            )
            return ExecutionResult.wait_for_event(
                CHILD_FINISHED_EVENT, child, data={"child": child}
            )
        finished = ChildFinished.model_validate(ctx.event_data)
        if finished.status is not WorkflowStatus.COMPLETE:
            raise ChildWorkflowFailed(
                ctx.workflow_id,
                ctx.step_name,
                finished.workflow_id,
                finished.status.value,
                finished.error,
            )
        if self.output_fn is not None:
            self.output_fn(ctx, self._typed(ctx, finished))
        return ExecutionResult.next()

    @staticmethod
    def _typed(ctx: StepContext[Any], finished: ChildFinished) -> Any:
        """The child's data as its model when this host knows the child definition."""
        model = ctx.children.data_type(finished.definition_id, finished.version)
        return finished.data if model is None else model.model_validate(finished.data)

    def is_retryable(self, error: BaseException) -> bool:
        # Starting again cannot make an unknown definition known or bad input valid,
        # nor reopen a finished (or purged) parent: the store refuses a child of one.
        # (That parent is this step's own workflow, so its commit is fenced off anyway.)
        return not isinstance(
            error, (DefinitionNotFound, InvalidData, InvalidStateTransition, NotFound)
        )
