"""WorkflowBuilder: define a workflow as a chain of steps, a DAG of named steps, or both.

Chain methods (``start_with``, ``then``, ``then_fn``, ``wait_for``, ``delay``) append a
step after the last one; ``name``, ``input``, ``output`` and ``on_error`` configure the
last step added. ``step(...)`` adds a DAG step that runs once its dependencies are done.
``build()`` validates the whole graph and raises ``DefinitionError`` naming the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from wfe_core.branch_builders import DecideBuilder, ParallelBuilder
from wfe_core.containers import (
    EndWorkflow,
    ForEach,
    If,
    Recur,
    Saga,
    Schedule,
    While,
)
from wfe_core.context import StepContext
from wfe_core.definition import Outcome, StepDef, WorkflowDefinition
from wfe_core.drafts import Draft, checked_seconds, unique_name
from wfe_core.errors import DefinitionError
from wfe_core.graph import check_dependencies, dependents_of
from wfe_core.models import datetime_to_ms
from wfe_core.primitives import Delay, EventOutput, InlineStep, KeyFn, WaitFor, configured
from wfe_core.retry import ErrorBehavior, ErrorKind, FailureAction, RetryPolicy
from wfe_core.step import StepBody, StepSpec, step_factory, step_name_of
from wfe_core.sub_workflow import SubWorkflow

DataT = TypeVar("DataT", bound=BaseModel)
BranchFn = Callable[["WorkflowBuilder[Any]"], Any]


class WorkflowBuilder(Generic[DataT]):
    """Builds a :class:`WorkflowDefinition`.

    Args:
        definition_id: the workflow's name, used to start it.
        version: definitions are registered and claimed per (id, version).
        data: the pydantic model of the workflow's data.
    """

    def __init__(
        self, definition_id: str, version: int = 1, data: type[DataT] | None = None
    ) -> None:
        if not definition_id or not isinstance(definition_id, str):
            raise DefinitionError("a workflow id must be a non-empty string")
        if not isinstance(version, int) or version < 1:
            raise DefinitionError(
                f"version must be a positive integer, got {version!r}", definition_id=definition_id
            )
        if data is None or not (isinstance(data, type) and issubclass(data, BaseModel)):
            raise DefinitionError(
                f"data must be a pydantic BaseModel class, got {data!r}",
                definition_id=definition_id,
            )
        self._id = definition_id
        self._version = version
        self._data_type: type[DataT] = data
        self._drafts: list[Draft] = []
        self._last: int | None = None
        self._default_retry: RetryPolicy | None = None
        self._default_timeout: float | None = None
        self._in_branch = False
        self._in_saga = False
        self._roots: list[int] = []  # a branch's first steps (a schedule adds one)

    # -- chain -------------------------------------------------------------------------

    def start_with(self, body: StepSpec, *, name: str | None = None) -> WorkflowBuilder[DataT]:
        """Add the first step of the chain."""
        index = self._add(body, name)
        self._drafts[index].initial = not self._in_branch
        self._roots.append(index)
        self._last = index
        return self

    def then(self, body: StepSpec, *, name: str | None = None) -> WorkflowBuilder[DataT]:
        """Add a step that runs after the last one."""
        index = self._add(body, name)
        self._link(index)
        return self

    def then_fn(
        self, fn: Callable[[StepContext[DataT]], Any], *, name: str | None = None
    ) -> WorkflowBuilder[DataT]:
        """Add an inline closure (sync or async) as the next step."""
        label = name or str(getattr(fn, "__name__", "inline"))
        return self._then_factory(configured(InlineStep, fn=fn), "InlineStep", label, name)

    def wait_for(
        self,
        event_name: str,
        key: str | KeyFn,
        *,
        output: EventOutput | None = None,
        timeout: float | timedelta | None = None,
        name: str | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Wait for the event (name, key); ``output(ctx, event_data)`` maps its data.

        An event published after the workflow started is seen even if it came before
        the workflow reached this step. Past ``timeout`` the step fails with
        ``StepTimeout`` and its failure policy applies.
        """
        factory = configured(WaitFor, event_name=event_name, event_key=key, output=output)
        self._then_factory(factory, "WaitFor", f"wait_for_{event_name}", name)
        self._current().settings["timeout"] = checked_seconds(timeout, "timeout")
        return self

    def delay(
        self, duration: float | timedelta, *, name: str | None = None
    ) -> WorkflowBuilder[DataT]:
        """Pause the chain for a stored duration (it survives restarts)."""
        seconds = checked_seconds(duration, "delay")
        return self._then_factory(configured(Delay, seconds=seconds), "Delay", "delay", name)

    def sub_workflow(
        self,
        definition_id: str,
        *,
        input: Callable[[StepContext[DataT]], Any] | None = None,
        output: Callable[[StepContext[DataT], Any], Any] | None = None,
        version: int | None = None,
        name: str | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Start a child workflow and wait for it without holding a worker.

        ``input(ctx)`` gives the child's data (a model instance or a dict, validated
        against the child's model); ``output(ctx, child_data)`` maps the finished
        child's data (typed when this host registered the child) back into
        ``ctx.data``. A child that ends FAILED or TERMINATED fails this step with
        ``ChildWorkflowFailed`` and the step's retry policy applies (a retry starts a
        new child). Terminating this workflow terminates the child.
        """
        if not isinstance(definition_id, str) or not definition_id:
            raise DefinitionError(
                f"sub_workflow() needs a workflow id, got {definition_id!r}", definition_id=self._id
            )
        if version is not None and (not isinstance(version, int) or version < 1):
            raise DefinitionError(
                f"sub_workflow() version must be a positive integer, got {version!r}",
                definition_id=self._id,
            )
        factory = configured(
            SubWorkflow,
            definition_id=definition_id,
            version=version,
            input_fn=input,
            output_fn=output,
        )
        return self._then_factory(factory, "SubWorkflow", f"sub_workflow_{definition_id}", name)

    def end_workflow(self, *, name: str | None = None) -> WorkflowBuilder[DataT]:
        """Complete the workflow here (e.g. at the end of a decision branch); steps
        still waiting or pending elsewhere are cancelled."""
        return self._then_factory(configured(EndWorkflow), "EndWorkflow", "end_workflow", name)

    def name(self, name: str) -> WorkflowBuilder[DataT]:
        """Rename the last step added."""
        draft = self._current()
        draft.name, draft.explicit_name = name, True
        return self

    def input(
        self, attribute: str, value: Callable[[StepContext[DataT]], Any]
    ) -> WorkflowBuilder[DataT]:
        """Set ``attribute`` of the last step's body to ``value(ctx)`` before it runs."""
        self._current().inputs.append((attribute, value))
        return self

    def output(
        self, mapping: Callable[[StepContext[DataT], Any], Any], attribute: str | None = None
    ) -> WorkflowBuilder[DataT]:
        """After the last step runs, call ``mapping(ctx, value)`` to change ``ctx.data``.

        ``value`` is the step body's ``attribute``, or the body itself when no attribute
        is named.
        """
        if attribute is None:
            self._current().outputs.append(mapping)
        else:
            self._current().outputs.append(lambda ctx, body: mapping(ctx, getattr(body, attribute)))
        return self

    def on_error(self, behavior: ErrorBehavior) -> WorkflowBuilder[DataT]:
        """What the last step does when it fails: retry, suspend, terminate, or (inside
        a saga) compensate at once, without retrying."""
        if behavior.kind is ErrorKind.COMPENSATE and not self._in_saga:
            raise DefinitionError(
                "ErrorBehavior.compensate() only works on a step inside saga(...)",
                definition_id=self._id,
                step_name=self._current().name,
            )
        self._current().settings["error_behavior"] = behavior
        return self

    def compensate_with(self, body: StepSpec, *, name: str | None = None) -> WorkflowBuilder[DataT]:
        """The step that undoes the last step, run if its saga rolls back (after the
        step completed, or when the step itself failed: it may have partly happened)."""
        draft = self._current()
        if not self._in_saga:
            raise DefinitionError(
                "compensate_with() only works on a step inside saga(...)",
                definition_id=self._id,
                step_name=draft.name,
            )
        if draft.compensation is not None:
            raise DefinitionError(
                "this step already has a compensation", definition_id=self._id, step_name=draft.name
            )
        index = self._add(body, name)
        self._drafts[index].compensates = True
        draft.compensation = index
        return self

    # -- containers --------------------------------------------------------------------

    def if_do(
        self,
        condition: Callable[[StepContext[DataT]], bool],
        branch: BranchFn,
        *,
        name: str | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Run the steps ``branch`` builds once if ``condition(ctx)`` holds, then go on."""
        factory = configured(If, condition=condition)
        return self._container(factory, "If", name or "if", [branch])

    def while_do(
        self,
        condition: Callable[[StepContext[DataT]], bool],
        branch: BranchFn,
        *,
        name: str | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Run the steps ``branch`` builds again and again while ``condition(ctx)`` holds."""
        factory = configured(While, condition=condition)
        return self._container(factory, "While", name or "while", [branch])

    def for_each(
        self,
        items: Callable[[StepContext[DataT]], Iterable[Any]],
        branch: BranchFn,
        *,
        parallel: bool = True,
        name: str | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Run the steps ``branch`` builds once per item (``ctx.item``), all at once or
        one after another. The items must be JSON values (they are stored)."""
        factory = configured(ForEach, items=items, parallel=parallel)
        return self._container(factory, "ForEach", name or "for_each", [branch])

    def parallel(self, *, name: str | None = None) -> ParallelBuilder[DataT]:
        """Start a block whose ``do`` branches run concurrently; ``join()`` ends it."""
        return ParallelBuilder(self, name)

    def decide(
        self,
        selector: Callable[[StepContext[DataT]], Any] | None = None,
        *,
        name: str | None = None,
    ) -> DecideBuilder[DataT]:
        """Start a decision: ``.branch(value, build)`` runs the branch whose value equals
        ``selector(ctx)`` (without a selector: the outcome value the previous step
        returned with ``ExecutionResult.outcome``), ``.otherwise(build)`` runs when none
        matches, and ``.end()`` goes on after the chosen branch. No match and no
        ``otherwise``: the decision just proceeds."""
        return DecideBuilder(self, selector, name)

    def schedule(
        self,
        delay: float | timedelta | Callable[[StepContext[DataT]], float | timedelta],
        branch: BranchFn,
        *,
        name: str | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Run the steps ``branch`` builds once, ``delay`` from now (a stored time),
        beside the chain: the next step does not wait for it, the workflow does."""
        if not callable(delay):
            checked_seconds(delay, "schedule delay")
        previous = self._last
        self._container(configured(Schedule, delay=delay), "Schedule", name or "schedule", [branch])
        self._last = previous  # the chain goes on beside the scheduled block
        return self

    def recur(
        self,
        interval: float | timedelta | Callable[[StepContext[DataT]], float | timedelta],
        until: Callable[[StepContext[DataT]], bool],
        branch: BranchFn,
        *,
        name: str | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Run the steps ``branch`` builds, then again ``interval`` after each round
        finishes, until ``until(ctx)`` holds (checked before every round); the chain
        goes on after that."""
        if not callable(interval):
            checked_seconds(interval, "recur interval")
        factory = configured(Recur, interval=interval, until=until)
        return self._container(factory, "Recur", name or "recur", [branch])

    def saga(
        self, branch: BranchFn, *, name: str | None = None, resume_after_compensation: bool = False
    ) -> WorkflowBuilder[DataT]:
        """A block whose steps are undone together: when one fails for good (after its
        retries, or at once with ``on_error(ErrorBehavior.compensate())``), the
        compensations (``compensate_with``) of the failed step and of every completed
        step inside run durably, newest first. Then the saga fails and its own
        ``on_error`` applies (default: the workflow FAILS; ``retry`` runs the whole
        saga again); with ``resume_after_compensation`` it proceeds with the outcome
        ``"compensated"`` instead."""
        factory = configured(Saga, resume_after_compensation=resume_after_compensation)
        self._then_factory(factory, "Saga", "saga", name)
        container = self._current_index()
        self._drafts[container].saga = True
        self._attach(container, branch, saga=True)
        return self

    def _container(
        self, factory: Callable[[], StepBody], body_name: str, label: str, branches: list[BranchFn]
    ) -> WorkflowBuilder[DataT]:
        self._then_factory(factory, body_name, label, None if label in _LABELS else label)
        container = self._current_index()
        for branch in branches:
            self._attach(container, branch)
        return self

    def _attach(self, container: int, branch: BranchFn, *, saga: bool = False) -> list[int]:
        """Build one branch of ``container`` in the shared step list; returns its first
        steps."""
        sub: WorkflowBuilder[DataT] = WorkflowBuilder.__new__(WorkflowBuilder)
        sub.__dict__.update(self.__dict__)
        sub._last, sub._roots, sub._in_branch = None, [], True
        sub._in_saga = self._in_saga or saga
        branch(sub)
        if not sub._roots:
            raise DefinitionError(
                "a branch needs at least one step",
                definition_id=self._id,
                step_name=self._drafts[container].name,
            )
        self._drafts[container].children.extend(sub._roots)
        self._last = container
        return sub._roots

    def _current_index(self) -> int:
        self._current()
        assert self._last is not None
        return self._last

    # -- DAG ---------------------------------------------------------------------------

    def step(
        self,
        step_id: str,
        body: StepSpec,
        *,
        depends_on: Sequence[str] = (),
        depends_on_any: Sequence[str] = (),
        run_if: Callable[[StepContext[DataT]], bool] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
        delay: float | timedelta | None = None,
        scheduled_at: datetime | None = None,
        on_failure: FailureAction | None = None,
    ) -> WorkflowBuilder[DataT]:
        """Add a named DAG step that runs when its dependencies are done.

        ``depends_on``: all must be done; ``depends_on_any``: at least one. Done means
        completed, skipped (``run_if`` false) or failed with ``FailureAction.CONTINUE``.
        """
        if self._in_branch:
            raise DefinitionError(
                "DAG steps (step()) cannot go inside a branch; use start_with/then there",
                definition_id=self._id,
                step_name=step_id,
            )
        if isinstance(depends_on, str) or isinstance(depends_on_any, str):
            raise DefinitionError(
                "depends_on takes a list of step ids, not a string",
                definition_id=self._id,
                step_name=step_id,
            )
        index = self._add(body, step_id)
        draft = self._drafts[index]
        draft.is_dag = True
        draft.depends_on = list(depends_on)
        draft.depends_on_any = list(depends_on_any)
        when = None if scheduled_at is None else self._ms(scheduled_at, step_id)
        draft.settings.update(
            run_if=run_if,
            retry=retry,
            timeout=checked_seconds(timeout, "timeout"),
            delay=checked_seconds(delay, "delay"),
            scheduled_at=when,
            on_failure=on_failure,
        )
        self._last = index
        return self

    def default_retry(self, policy: RetryPolicy) -> WorkflowBuilder[DataT]:
        """The retry policy of steps that set none."""
        self._default_retry = policy
        return self

    def default_timeout(self, timeout: float | timedelta) -> WorkflowBuilder[DataT]:
        """The timeout (seconds) of steps that set none."""
        self._default_timeout = checked_seconds(timeout, "default timeout")
        return self

    # -- build -------------------------------------------------------------------------

    def build(self) -> WorkflowDefinition:
        """Validate and freeze the definition.

        Raises:
            DefinitionError: no steps, duplicate names, an unknown dependency, a cycle.
        """
        if not self._drafts:
            raise DefinitionError("a workflow needs at least one step", definition_id=self._id)
        index = self._index_names()
        steps = tuple(self._freeze(i, d, index) for i, d in enumerate(self._drafts))
        check_dependencies(self._id, steps)
        initial = tuple(
            s.id
            for s, d in zip(steps, self._drafts, strict=True)
            if d.initial or (s.is_dag and not s.has_dependencies)
        )
        return WorkflowDefinition(
            id=self._id,
            version=self._version,
            data_type=self._data_type,
            steps=steps,
            initial_steps=initial,
            default_retry=self._default_retry,
            default_timeout=self._default_timeout,
            dependents=dependents_of(steps),
        )

    # -- internals ---------------------------------------------------------------------

    def _add(self, body: StepSpec, name: str | None) -> int:
        try:
            factory = step_factory(body)
        except TypeError as exc:
            raise DefinitionError(str(exc), definition_id=self._id, step_name=name) from exc
        body_name = step_name_of(body)
        self._drafts.append(Draft(name or body_name, name is not None, factory, body_name))
        return len(self._drafts) - 1

    def _then_factory(
        self, factory: Callable[[], StepBody], body_name: str, label: str, name: str | None
    ) -> WorkflowBuilder[DataT]:
        self._drafts.append(Draft(name or label, name is not None, factory, body_name))
        self._link(len(self._drafts) - 1)
        return self

    def _link(self, index: int) -> None:
        if self._last is None:
            self._drafts[index].initial = not self._in_branch
            self._roots.append(index)
        else:
            self._drafts[self._last].next.append(Outcome(index))
        self._last = index

    def _current(self) -> Draft:
        if self._last is None:
            raise DefinitionError("add a step first", definition_id=self._id)
        return self._drafts[self._last]

    def _ms(self, when: datetime, step_id: str) -> int:
        try:
            return datetime_to_ms(when)
        except ValueError as exc:
            raise DefinitionError(str(exc), definition_id=self._id, step_name=step_id) from exc

    def _index_names(self) -> dict[str, int]:
        """Map names to indexes; unnamed duplicates get a numeric suffix."""
        index: dict[str, int] = {}
        for i, draft in enumerate(self._drafts):
            if draft.name in index:
                if draft.explicit_name:
                    raise DefinitionError(
                        f"duplicate step name {draft.name!r}",
                        definition_id=self._id,
                        step_name=draft.name,
                    )
                draft.name = unique_name(draft.name, index)
            index[draft.name] = i
        return index

    def _freeze(self, i: int, d: Draft, index: dict[str, int]) -> StepDef:
        def resolve(names: Iterable[str]) -> tuple[int, ...]:
            ids = []
            for dep in names:
                if dep not in index:
                    raise DefinitionError(
                        f"depends on unknown step {dep!r}", definition_id=self._id, step_name=d.name
                    )
                ids.append(index[dep])
            return tuple(ids)

        settings = dict(d.settings)
        behavior: ErrorBehavior | None = settings.pop("error_behavior", None)
        retry = settings.pop("retry", None) or (behavior.as_retry_policy() if behavior else None)
        if d.saga and retry is None:
            retry = _SAGA_RETRY  # a rolled-back saga runs again only when asked to
        return replace(
            StepDef(id=i, name=d.name, factory=d.factory, body_name=d.body_name),
            next=tuple(d.next),
            depends_on=resolve(d.depends_on),
            depends_on_any=resolve(d.depends_on_any),
            retry=retry,
            error_behavior=behavior,
            inputs=tuple(d.inputs),
            outputs=tuple(d.outputs),
            is_dag=d.is_dag,
            children=tuple(d.children),
            compensation=d.compensation,
            compensates=d.compensates,
            saga=d.saga,
            **settings,
        )


_LABELS = frozenset({"if", "while", "for_each", "parallel", "decide", "schedule", "recur"})
_SAGA_RETRY = RetryPolicy(max_attempts=1)
