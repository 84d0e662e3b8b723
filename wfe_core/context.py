"""StepContext: what a step body (and every callable in a definition) receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

DataT = TypeVar("DataT", bound=BaseModel)


class ChildWorkflows(Protocol):
    """What a host lends a running step to start child workflows."""

    async def start(
        self,
        definition_id: str,
        data: Any,
        *,
        key: str,
        parent_id: str,
        version: int | None = None,
        reference: str | None = None,
    ) -> str:
        """Start (or find, by the idempotency ``key``) a child; returns its id."""
        ...

    def data_type(self, definition_id: str, version: int) -> type[BaseModel] | None:
        """The data model of a definition registered on this host, if any."""
        ...


@dataclass
class StepContext(Generic[DataT]):
    """The running step's view of its workflow.

    ``data`` is the workflow's typed data; changes made to it are committed together
    with the step's transition. ``attempt`` is 1 on the first try; ``item`` is the
    value a branch runs for; ``persistence_data`` is what the step saved last time
    (``ExecutionResult.persist/sleep``); ``event_data`` is set after an event wait;
    ``previous_outcome`` is the outcome value of the step that led to this one.
    """

    data: DataT
    workflow_id: str
    definition_id: str
    version: int
    step_name: str
    pointer_id: str
    attempt: int = 1
    item: Any = None
    persistence_data: Any = None
    event_data: Any = None
    event_published: bool = False
    previous_outcome: Any = None
    _children: ChildWorkflows | None = field(default=None, repr=False)
    _children_started: int = field(default=0, repr=False)

    async def start_workflow(
        self, definition_id: str, data: Any, *, reference: str | None = None
    ) -> str:
        """Start a child workflow; returns its id.

        Idempotent across re-runs of this step: the n-th child started by this step
        activation always maps to the same instance, so a retried step does not start
        a second child.
        """
        self._children_started += 1
        key = f"child:{self.workflow_id}:{self.pointer_id}:{self._children_started}"
        return await self.children.start(
            definition_id, data, key=key, parent_id=self.workflow_id, reference=reference
        )

    @property
    def children(self) -> ChildWorkflows:
        """The host's child-workflow service; ``RuntimeError`` outside a host."""
        if self._children is None:
            raise RuntimeError("this context cannot start workflows (no host attached)")
        return self._children
