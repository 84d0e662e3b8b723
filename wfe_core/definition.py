"""The built form of a workflow: an immutable graph of step definitions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from wfe_core.context import StepContext
from wfe_core.models import DefinitionSourceRecord, canonical_config, source_digest
from wfe_core.retry import ErrorBehavior, FailureAction, RetryPolicy
from wfe_core.step import StepBody

ANY_OUTCOME: Any = object()
"""Outcome value that matches whatever the step returned."""

InputMapping = tuple[str, Callable[[StepContext[Any]], Any]]
OutputMapping = Callable[[StepContext[Any], Any], Any]


@dataclass(frozen=True)
class Outcome:
    """An edge of the chain: go to ``next_step`` when the outcome equals ``value``."""

    next_step: int
    value: Any = ANY_OUTCOME

    def matches(self, outcome: Any) -> bool:
        return self.value is ANY_OUTCOME or self.value == outcome


@dataclass(frozen=True)
class StepDef:
    """One step of a definition. ``id`` is its index in ``WorkflowDefinition.steps``."""

    id: int
    name: str
    factory: Callable[[], StepBody]
    body_name: str
    next: tuple[Outcome, ...] = ()
    depends_on: tuple[int, ...] = ()
    depends_on_any: tuple[int, ...] = ()
    children: tuple[int, ...] = ()
    run_if: Callable[[StepContext[Any]], bool] | None = None
    retry: RetryPolicy | None = None
    error_behavior: ErrorBehavior | None = None
    timeout: float | None = None
    delay: float | None = None
    scheduled_at: int | None = None  # epoch ms
    on_failure: FailureAction | None = None
    inputs: tuple[InputMapping, ...] = ()
    outputs: tuple[OutputMapping, ...] = ()
    is_dag: bool = False
    compensation: int | None = None  # the step that undoes this one (inside a saga)
    compensates: bool = False  # this step is another step's compensation
    saga: bool = False  # a saga container: rolls back its branch when a step fails

    @property
    def has_dependencies(self) -> bool:
        return bool(self.depends_on or self.depends_on_any)


@dataclass(frozen=True)
class DefinitionSource:
    """The text a definition was built from (a YAML file, say), kept with its instances.

    ``kind`` names the loader that rebuilds the definition from ``text`` and ``config``
    (the load-time values); the store keeps one copy per :attr:`digest`, and every
    instance started from it resumes against that copy, whatever happens to the file.
    """

    kind: str
    text: str
    config: Mapping[str, Any] = field(default_factory=dict)
    path: str | None = None  # where it was loaded from, for messages only

    @property
    def config_json(self) -> str:
        return canonical_config(self.config)

    @cached_property
    def digest(self) -> str:
        """sha256 of kind, text and config: the identity of the stored copy (hashed once:
        hosts compare it on every claim of a workflow started from a source)."""
        return source_digest(self.kind, self.text, self.config)

    def record(self) -> DefinitionSourceRecord:
        """This source as the store keeps it."""
        return DefinitionSourceRecord(
            digest=self.digest, kind=self.kind, text=self.text, config=dict(self.config)
        )


@dataclass(frozen=True)
class WorkflowDefinition:
    """A validated workflow: register it with a host. Build it with ``WorkflowBuilder``."""

    id: str
    version: int
    data_type: type[BaseModel]
    steps: tuple[StepDef, ...]
    initial_steps: tuple[int, ...]
    default_retry: RetryPolicy | None = None
    default_timeout: float | None = None
    dependents: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    source: DefinitionSource | None = None

    def step_named(self, name: str) -> StepDef:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def fingerprint(self) -> str:
        """A hash of the definition's shape, to tell two different definitions apart."""
        shape = {
            "source": None if self.source is None else self.source.digest,
            "id": self.id,
            "version": self.version,
            "data": self.data_type.model_json_schema(),
            "steps": [
                [
                    s.name,
                    s.body_name,
                    [
                        [o.next_step, None if o.value is ANY_OUTCOME else repr(o.value)]
                        for o in s.next
                    ],
                    list(s.depends_on),
                    list(s.depends_on_any),
                    list(s.children),
                    s.timeout,
                    s.delay,
                    s.scheduled_at,
                    None if s.on_failure is None else s.on_failure.value,
                    None if s.retry is None else repr(s.retry),
                    s.compensation,
                    s.saga,
                ]
                for s in self.steps
            ],
        }
        encoded = json.dumps(shape, sort_keys=True, default=repr).encode()
        return hashlib.sha256(encoded).hexdigest()
