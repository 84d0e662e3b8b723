"""The block builders a ``WorkflowBuilder`` hands out: ``parallel()`` and ``decide()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from wfe_core.containers import Decide, Parallel
from wfe_core.context import StepContext
from wfe_core.errors import DefinitionError
from wfe_core.primitives import configured

if TYPE_CHECKING:
    from wfe_core.builder import BranchFn, WorkflowBuilder

DataT = TypeVar("DataT", bound=BaseModel)


class ParallelBuilder(Generic[DataT]):
    """``parallel().do(branch).do(branch).join()``: branches that run concurrently."""

    def __init__(self, parent: WorkflowBuilder[DataT], name: str | None) -> None:
        self._parent = parent
        parent._container(configured(Parallel), "Parallel", name or "parallel", [])
        self._index = parent._current_index()

    def do(self, branch: BranchFn) -> ParallelBuilder[DataT]:
        """Add a branch (built by ``branch(builder)``)."""
        self._parent._attach(self._index, branch)
        return self

    def join(self) -> WorkflowBuilder[DataT]:
        """End the block; steps added next run once every branch has finished."""
        if not self._parent._drafts[self._index].children:
            raise DefinitionError(
                "parallel() needs at least one do(...) branch", definition_id=self._parent._id
            )
        self._parent._last = self._index
        return self._parent


class DecideBuilder(Generic[DataT]):
    """``decide(selector).branch(value, build)....otherwise(build).end()``."""

    def __init__(
        self,
        parent: WorkflowBuilder[DataT],
        selector: Callable[[StepContext[DataT]], Any] | None,
        name: str | None,
    ) -> None:
        self._parent = parent
        self._routes: list[tuple[Any, list[int]]] = []
        self._otherwise: list[int] = []
        factory = configured(
            Decide, selector=selector, routes=self._routes, otherwise=self._otherwise
        )
        parent._container(factory, "Decide", name or "decide", [])
        self._index = parent._current_index()

    def branch(self, value: Any, branch: BranchFn) -> DecideBuilder[DataT]:
        """Run the steps ``branch`` builds when the decided value equals ``value``."""
        if any(existing == value for existing, _ in self._routes):
            raise DefinitionError(
                f"decide() already has a branch for {value!r}",
                definition_id=self._parent._id,
                step_name=self._parent._drafts[self._index].name,
            )
        self._routes.append((value, self._parent._attach(self._index, branch)))
        return self

    def otherwise(self, branch: BranchFn) -> DecideBuilder[DataT]:
        """Run the steps ``branch`` builds when no ``branch`` value matches."""
        if self._otherwise:
            raise DefinitionError(
                "decide() already has an otherwise branch",
                definition_id=self._parent._id,
                step_name=self._parent._drafts[self._index].name,
            )
        self._otherwise.extend(self._parent._attach(self._index, branch))
        return self

    def end(self) -> WorkflowBuilder[DataT]:
        """End the decision; steps added next run after the chosen branch."""
        if not self._routes:
            raise DefinitionError(
                "decide() needs at least one branch(value, ...)",
                definition_id=self._parent._id,
                step_name=self._parent._drafts[self._index].name,
            )
        self._parent._last = self._index
        return self._parent
