"""Graph checks over step dependencies: unknown steps and cycles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wfe_core.definition import StepDef
from wfe_core.errors import DefinitionError


def dependents_of(steps: Sequence[StepDef]) -> Mapping[int, tuple[int, ...]]:
    """For each step id, the steps that depend on it (all or any)."""
    out: dict[int, list[int]] = {}
    for step in steps:
        for dep in {*step.depends_on, *step.depends_on_any}:
            out.setdefault(dep, []).append(step.id)
    return {k: tuple(v) for k, v in out.items()}


def check_dependencies(definition_id: str, steps: Sequence[StepDef]) -> None:
    """Raise ``DefinitionError`` listing the first dependency cycle found."""
    for step in steps:
        if step.id in step.depends_on or step.id in step.depends_on_any:
            raise DefinitionError(
                "a step cannot depend on itself", definition_id=definition_id, step_name=step.name
            )
    white, grey, black = 0, 1, 2
    colour = [white] * len(steps)

    def visit(node: int, path: list[int]) -> None:
        colour[node] = grey
        path.append(node)
        step = steps[node]
        for dep in (*step.depends_on, *step.depends_on_any):
            if colour[dep] == grey:
                cycle = [steps[i].name for i in path[path.index(dep) :]] + [steps[dep].name]
                raise DefinitionError(
                    "dependency cycle (a -> b: a depends on b): " + " -> ".join(cycle),
                    definition_id=definition_id,
                    step_name=steps[dep].name,
                )
            if colour[dep] == white:
                visit(dep, path)
        path.pop()
        colour[node] = black

    for step in steps:
        if colour[step.id] == white:
            visit(step.id, [])
