"""Load a workflow file: parse, apply ``config``, validate, check the graph, build.

Every problem is a :class:`~wfe_core.errors.DefinitionError` naming the file, the line
and, where there is one, the step.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wfe_core.builder import WorkflowBuilder
from wfe_core.definition import DefinitionSource, WorkflowDefinition
from wfe_core.errors import DefinitionError
from wfe_yaml.conditions import Condition
from wfe_yaml.data import data_model
from wfe_yaml.document import Document, parse
from wfe_yaml.document import Path as DocPath
from wfe_yaml.graph import Planned, plan
from wfe_yaml.schema import FAILURE_ACTIONS, ShellConfig, WorkflowFile
from wfe_yaml.shell_splice import splice
from wfe_yaml.steps import DenoStep, ShellStep, YamlStep
from wfe_yaml.templates import EXPRESSION, TemplateError, as_text, parse_ref, refs_in

SOURCE_KIND = "yaml"
"""The :class:`DefinitionSource` kind of YAML definitions (entry point ``wfe.sources``)."""


def load_workflow(path: str | Path, config: Mapping[str, Any] | None = None) -> WorkflowDefinition:
    """Load the YAML workflow at ``path``; ``config`` fills ``${{ config.KEY }}``.

    Returns a definition to register with a host. The file's text and ``config`` travel
    with it (``definition.source``), and every instance started from it keeps that copy.

    Raises:
        DefinitionError: the file cannot be read, or is not a valid workflow.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot read the workflow file: {exc}", path=str(path)) from exc
    return load_workflow_text(text, config, path=str(path))


def load_workflow_text(
    text: str, config: Mapping[str, Any] | None = None, *, path: str | None = None
) -> WorkflowDefinition:
    """Like :func:`load_workflow`, from the text of a file (``path`` is for messages)."""
    config = dict(config or {})
    document = parse(text, path)
    document.value = _apply_config(document, document.value, (), config)
    spec = _validate(document)
    document.definition_id = spec.workflow.id
    planned = plan(spec.workflow, document, config)
    env = {name: as_text(value) for name, value in spec.workflow.env.items()}
    _check_env_refs(document, env)
    builder = WorkflowBuilder(
        spec.workflow.id,
        version=spec.workflow.version,
        data=data_model(spec.workflow.id, spec.workflow.data),
    )
    for step in planned:
        _check_refs(document, step, planned)
        body: YamlStep = (
            ShellStep(step.spec, env)
            if isinstance(step.spec.settings, ShellConfig)
            else DenoStep(step.spec, env)
        )
        builder.step(
            step.spec.name,
            body,
            depends_on=step.depends_on,
            depends_on_any=step.depends_on_any,
            run_if=None if step.condition is None else _run_if(step.condition),
            retry=step.retry_policy,
            timeout=step.spec.time_limit,
            on_failure=FAILURE_ACTIONS[step.spec.on_failure],
        )
    definition = builder.build()
    source = DefinitionSource(SOURCE_KIND, text, config, path)
    return dataclasses.replace(definition, source=source)


def load_source(text: str, config: dict[str, Any]) -> WorkflowDefinition:
    """Rebuild a definition from its stored copy (the ``wfe.sources`` loader)."""
    return load_workflow_text(text, config, path="<stored copy>")


def _run_if(condition: Condition) -> Any:
    def run_if(ctx: Any) -> bool:
        return condition.evaluate(ctx.data.model_dump(mode="json"))

    return run_if


def _apply_config(document: Document, value: Any, at: DocPath, config: dict[str, Any]) -> Any:
    """Replace ``${{ config.KEY }}`` in every string; other references stay for later."""
    if isinstance(value, dict):
        return {
            # A condition reads config values itself, as values: spliced in as text
            # they would change its syntax.
            k: v if k == "if" else _apply_config(document, v, (*at, str(k)), config)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_apply_config(document, v, (*at, i), config) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${{" not in value:
        return value
    whole = _whole_expression(value)
    try:
        ref = None if whole is None else parse_ref(whole.group(1))
        if ref is not None and ref.root == "config":
            return _config_value(ref.path[0], config)
        return EXPRESSION.sub(lambda m: _config_text(m.group(0), m.group(1), config), value)
    except TemplateError as exc:
        raise document.error(str(exc), at, step_name=_step_at(document, at)) from exc


def _whole_expression(value: str) -> re.Match[str] | None:
    """The one ``${{ }}`` that is all of ``value`` (blanks aside), if it is one.

    Not ``fullmatch``: its lazy group would stretch across ``${{ a }}${{ b }}``.
    """
    text = value.strip()
    found = list(EXPRESSION.finditer(text))
    return found[0] if len(found) == 1 and found[0].span() == (0, len(text)) else None


def _config_text(original: str, expression: str, config: dict[str, Any]) -> str:
    ref = parse_ref(expression)
    return as_text(_config_value(ref.path[0], config)) if ref.root == "config" else original


def _config_value(key: str, config: dict[str, Any]) -> Any:
    if key not in config:
        known = ", ".join(sorted(config)) or "none were given"
        raise TemplateError(
            f"unknown variable ${{{{ config.{key} }}}}: pass it with --config {key}=VALUE "
            f"(config values given: {known})"
        )
    return config[key]


def _validate(document: Document) -> WorkflowFile:
    try:
        return WorkflowFile.model_validate(document.value)
    except ValidationError as exc:
        raise _validation_error(document, exc) from exc


def _validation_error(document: Document, exc: ValidationError) -> DefinitionError:
    errors = exc.errors()[:5]
    places = [_real_path(document.value, error["loc"]) for error in errors]
    problems = []
    for error, at in zip(errors, places, strict=True):
        where = ".".join(str(p) for p in at) or "the file"
        line = document.line_of(at)
        # The first problem's line leads the message; the others carry their own.
        shown = f" (line {line})" if line and at is not places[0] else ""
        problems.append(f"{where}{shown}: {_problem(error)}")
    workflow = document.value.get("workflow") if isinstance(document.value, dict) else None
    definition_id = workflow.get("id") if isinstance(workflow, dict) else None
    return document.error(
        "; ".join(problems),
        places[0],
        step_name=_step_at(document, places[0]),
        definition_id=definition_id if isinstance(definition_id, str) else None,
    )


def _problem(error: Any) -> str:
    got = f"{error['input']!r:.80}"
    if error["type"] == "literal_error":
        return f"{got} is not allowed here; expected {error['ctx']['expected']}"
    if error["type"] == "extra_forbidden":
        return "unknown key (not part of the workflow format)"
    if error["type"] == "missing":
        return f"the key {error['loc'][-1]!r} is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{message} (got {got})"


def _real_path(value: Any, loc: tuple[int | str, ...]) -> DocPath:
    """``loc`` without pydantic's union tags: only the keys the document has."""
    path: list[str | int] = []
    for part in loc:
        if part == "if_":
            part = "if"  # the field's Python name; the document says ``if``
        if not _has(value, part):
            continue
        value = value[part]
        path.append(part)
    return tuple(path)


def _has(value: Any, part: int | str) -> bool:
    if isinstance(value, dict):
        return part in value
    return isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)


def _step_at(document: Document, at: DocPath) -> str | None:
    """The name of the step whose mapping contains ``at``."""
    node: Any = document.value
    name = None
    for part in at:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        in_list = isinstance(part, int)
        if in_list and isinstance(node, dict) and isinstance(node.get("name"), str):
            name = None if "parallel" in node else node["name"]
    return name


def _check_env_refs(document: Document, env: dict[str, str]) -> None:
    for name, value in env.items():
        try:
            for ref in refs_in(value):
                if ref.root == "steps":
                    raise TemplateError(
                        f"workflow env {name}: ${{{{ {ref.text} }}}} is not allowed here "
                        "(put it in the env of the step that needs it)"
                    )
        except TemplateError as exc:
            raise document.error(str(exc), ("workflow", "env", name)) from exc


def _check_refs(document: Document, step: Planned, planned: list[Planned]) -> None:
    """Run-time references must parse, and name steps that finish before this one."""
    spec = step.spec
    texts: list[tuple[DocPath, str]] = [
        ((*step.at, "env", k), as_text(v)) for k, v in spec.env.items()
    ]
    settings = spec.settings
    if isinstance(settings, ShellConfig):
        texts.append(((*step.at, "config", "run"), settings.run))
        if settings.working_directory is not None:
            texts.append(((*step.at, "config", "working_directory"), settings.working_directory))
    elif EXPRESSION.search(settings.script):
        raise document.error(
            "${{ }} is not interpolated into Deno scripts (data must not become code): "
            "read values with Wfe.getData()",
            (*step.at, "config", "script"),
            step_name=spec.name,
        )
    try:
        refs = [ref for _, text in texts for ref in refs_in(text)]
        if isinstance(settings, ShellConfig):
            _check_splice(settings.run, len(EXPRESSION.findall(settings.run)))
        refs.extend(() if step.condition is None else step.condition.refs)
        for ref in refs:
            if ref.step is not None and ref.step not in step.ancestors:
                raise TemplateError(_not_before(spec.name, ref.step, planned))
    except TemplateError as exc:
        at = texts[0][0] if texts else step.at
        raise document.error(str(exc), at, step_name=spec.name) from exc


def _check_splice(command: str, count: int) -> None:
    """Splice placeholders now, so a reference the shell could not take as data (in a
    quoted heredoc, in arithmetic) is a load error rather than a failed step later."""
    try:
        splice(command, ["x"] * count)
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc


def _not_before(name: str, other: str, planned: list[Planned]) -> str:
    if other not in {p.spec.name for p in planned}:
        return f"${{{{ steps.{other}.outputs… }}}} names no step of this workflow"
    return (
        f"reads the outputs of step {other!r}, which does not run before {name!r}: "
        "add it to depends_on"
    )
