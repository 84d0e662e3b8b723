"""The order of a file's steps: sequential by default, a DAG when it says so.

Without any ``depends_on``/``depends_on_any``, each item waits for the one before it (a
``parallel`` group is one item: its steps run together and the next item waits for all
of them). As soon as one step or group names dependencies, the file is a DAG: each step
waits only for what it names (plus what its group names), and a group's name stands for
all of its steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wfe_core.retry import RetryPolicy
from wfe_yaml.conditions import Condition, parse_condition
from wfe_yaml.document import Document, Path
from wfe_yaml.schema import GroupSpec, StepSpec, WorkflowSpec
from wfe_yaml.templates import TemplateError

RUN_ONCE = RetryPolicy(max_attempts=1)
"""YAML steps run once unless they say ``retry``."""


@dataclass
class Planned:
    """A step with its place in the file and its resolved dependencies."""

    spec: StepSpec
    at: Path
    depends_on: list[str] = field(default_factory=list)
    depends_on_any: list[str] = field(default_factory=list)
    ancestors: set[str] = field(default_factory=set)
    condition: Condition | None = None

    @property
    def retry_policy(self) -> RetryPolicy:
        return RUN_ONCE if self.spec.retry is None else self.spec.retry.to_policy()


def plan(workflow: WorkflowSpec, document: Document, config: Mapping[str, Any]) -> list[Planned]:
    """Every step in file order with its dependencies; DefinitionError for duplicate
    names, unknown dependencies and cycles."""
    steps, groups = _flatten(workflow, document)
    dag = any(_names_dependencies(item) for item in workflow.steps)
    known = {p.spec.name for p in steps}
    previous: list[str] = []
    for index, item in enumerate(workflow.steps):
        members = [p for p in steps if p.at[2] == index]
        for planned in members:
            if dag:
                _resolve(planned, item, groups, known, document)
            else:
                planned.depends_on = list(previous)
        previous = [p.spec.name for p in members]
    _ancestors(steps, document)
    for planned in steps:
        if planned.spec.if_ is not None:
            planned.condition = _condition(planned, document, config)
    return steps


def _names_dependencies(item: StepSpec | GroupSpec) -> bool:
    if item.depends_on or item.depends_on_any:
        return True
    return isinstance(item, GroupSpec) and any(
        s.depends_on or s.depends_on_any for s in item.parallel
    )


def _flatten(
    workflow: WorkflowSpec, document: Document
) -> tuple[list[Planned], dict[str, list[str]]]:
    steps: list[Planned] = []
    groups: dict[str, list[str]] = {}
    seen: dict[str, Path] = {}

    def claim(name: str, at: Path) -> None:
        if name in seen:
            line = document.line_of(seen[name])
            raise document.error(
                f"duplicate step name {name!r} (first at line {line})", at, step_name=name
            )
        seen[name] = at

    for index, item in enumerate(workflow.steps):
        at: Path = ("workflow", "steps", index)
        if isinstance(item, GroupSpec):
            if item.name is not None:
                claim(item.name, (*at, "name"))
                groups[item.name] = [s.name for s in item.parallel]
            for inner, step in enumerate(item.parallel):
                claim(step.name, (*at, "parallel", inner, "name"))
                steps.append(Planned(step, (*at, "parallel", inner)))
        else:
            claim(item.name, (*at, "name"))
            steps.append(Planned(item, at))
    return steps, groups


def _resolve(
    planned: Planned,
    item: StepSpec | GroupSpec,
    groups: dict[str, list[str]],
    known: set[str],
    document: Document,
) -> None:
    outer = item if isinstance(item, GroupSpec) else None
    for attribute in ("depends_on", "depends_on_any"):
        names = [*(getattr(outer, attribute) if outer else []), *getattr(planned.spec, attribute)]
        resolved: list[str] = []
        for name in names:
            if name in groups:
                resolved.extend(groups[name])
            elif name in known:
                resolved.append(name)
            else:
                raise document.error(
                    f"{attribute} names {name!r}, which is not a step of this workflow "
                    f"(steps: {', '.join(sorted(known))})",
                    (*planned.at, attribute),
                    step_name=planned.spec.name,
                )
        setattr(planned, attribute, list(dict.fromkeys(resolved)))


def _ancestors(steps: list[Planned], document: Document) -> None:
    """Fill ``ancestors``; a cycle (or a step depending on itself) is an error."""
    by_name = {p.spec.name: p for p in steps}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> set[str]:
        planned = by_name[name]
        if state.get(name) == "done":
            return planned.ancestors
        if state.get(name) == "open":
            cycle = [*trail[trail.index(name) :], name]
            raise document.error(
                f"dependency cycle: {' -> '.join(cycle)}",
                (*by_name[cycle[0]].at, "depends_on"),
                step_name=cycle[0],
            )
        state[name] = "open"
        found: set[str] = set()
        for parent in (*planned.depends_on, *planned.depends_on_any):
            found |= {parent, *visit(parent, [*trail, name])}
        planned.ancestors = found
        state[name] = "done"
        return found

    for name in by_name:
        visit(name, [])


def _condition(planned: Planned, document: Document, config: Mapping[str, Any]) -> Condition:
    assert planned.spec.if_ is not None
    try:
        return parse_condition(planned.spec.if_, config)
    except TemplateError as exc:
        raise document.error(str(exc), (*planned.at, "if"), step_name=planned.spec.name) from exc
