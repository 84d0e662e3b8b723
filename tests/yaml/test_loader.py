"""The YAML loader on good files: order, groups, DAGs, retry, failure, timeouts, config,
the stored source, data defaults and env.

Pure unit tests (no backend fixture, so each runs once): a file is loaded and the
definition it builds is read back.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import DefinitionError
from wfe_core.retry import Backoff, FailureAction, RetryPolicy
from wfe_yaml import SOURCE_KIND, YamlData, load_workflow, load_workflow_text
from wfe_yaml.steps import DenoStep, ShellStep


def load(text: str, config: dict[str, Any] | None = None) -> WorkflowDefinition:
    return load_workflow_text(textwrap.dedent(text), config, path="flow.yaml")


def deps(definition: WorkflowDefinition, name: str) -> tuple[set[str], set[str]]:
    """The names a step waits for: (all of, any of)."""
    step = definition.step_named(name)
    names = [s.name for s in definition.steps]
    return {names[i] for i in step.depends_on}, {names[i] for i in step.depends_on_any}


SEQUENTIAL = """
    workflow:
      id: build
      version: 3
      description: three steps in a row
      steps:
        - name: Checkout
          config: { run: "git clone repo" }
        - name: Test
          config: { run: "make test" }
        - name: Notify
          type: deno
          config:
            script: "Wfe.setOutput('ok', true)"
"""


def test_a_sequential_file_chains_its_steps_in_file_order() -> None:
    definition = load(SEQUENTIAL)
    assert (definition.id, definition.version) == ("build", 3)
    assert [s.name for s in definition.steps] == ["Checkout", "Test", "Notify"]
    assert deps(definition, "Checkout") == (set(), set())
    assert deps(definition, "Test") == ({"Checkout"}, set())
    assert deps(definition, "Notify") == ({"Test"}, set())
    assert [definition.steps[i].name for i in definition.initial_steps] == ["Checkout"]
    assert isinstance(definition.step_named("Test").factory(), ShellStep)
    assert isinstance(definition.step_named("Notify").factory(), DenoStep)


def test_load_workflow_reads_the_file_and_names_it(tmp_path: Path) -> None:
    file = tmp_path / "build.yaml"
    file.write_text(textwrap.dedent(SEQUENTIAL), encoding="utf-8")
    definition = load_workflow(file)
    assert [s.name for s in definition.steps] == ["Checkout", "Test", "Notify"]
    assert definition.source is not None and definition.source.path == str(file)
    assert load_workflow(str(file)).source == definition.source  # a str path works too


def test_a_parallel_group_runs_together_between_its_neighbours() -> None:
    definition = load(
        """
        workflow:
          id: fan
          steps:
            - name: Prepare
              config: { run: "true" }
            - parallel:
                - name: Lint
                  config: { run: "ruff check" }
                - name: Types
                  config: { run: "mypy" }
            - name: Ship
              config: { run: "true" }
        """
    )
    assert deps(definition, "Lint") == ({"Prepare"}, set())
    assert deps(definition, "Types") == ({"Prepare"}, set())
    assert deps(definition, "Ship") == ({"Lint", "Types"}, set())


def test_a_group_first_in_the_file_starts_all_its_steps() -> None:
    definition = load(
        """
        workflow:
          id: fan
          steps:
            - parallel:
                - { name: A, config: { run: "true" } }
                - { name: B, config: { run: "true" } }
            - { name: C, config: { run: "true" } }
        """
    )
    assert {definition.steps[i].name for i in definition.initial_steps} == {"A", "B"}
    assert deps(definition, "C") == ({"A", "B"}, set())


def test_a_dag_waits_only_for_what_it_names_and_a_group_name_stands_for_its_steps() -> None:
    definition = load(
        """
        workflow:
          id: dag
          steps:
            - name: Fetch
              config: { run: "true" }
            - name: Mirror
              config: { run: "true" }
            - name: Checks
              depends_on: [Fetch]
              parallel:
                - name: Unit
                  config: { run: "true" }
                - name: Lint
                  depends_on: [Mirror]
                  config: { run: "true" }
            - name: Report
              depends_on: [Checks]
              config: { run: "true" }
            - name: Alert
              depends_on_any: [Unit, Lint]
              config: { run: "true" }
        """
    )
    # DAG mode: Mirror no longer waits for Fetch, though it comes after it in the file.
    assert deps(definition, "Mirror") == (set(), set())
    assert deps(definition, "Unit") == ({"Fetch"}, set())
    assert deps(definition, "Lint") == ({"Fetch", "Mirror"}, set())
    assert deps(definition, "Report") == ({"Unit", "Lint"}, set())
    assert deps(definition, "Alert") == (set(), {"Unit", "Lint"})
    assert {definition.steps[i].name for i in definition.initial_steps} == {"Fetch", "Mirror"}


def test_a_step_without_retry_runs_once() -> None:
    step = load(SEQUENTIAL).step_named("Test")
    assert step.retry is not None and step.retry.max_attempts == 1


@pytest.mark.parametrize(
    ("retry", "policy"),
    [
        ("3", RetryPolicy(3, Backoff.exponential(1.0, 60.0))),
        ("{ attempts: 2 }", RetryPolicy(2, Backoff.exponential(1.0, 60.0))),
        (
            "{ attempts: 4, backoff: { type: fixed, delay: 2s } }",
            RetryPolicy(4, Backoff.fixed(2.0)),
        ),
        (
            "{ attempts: 5, backoff: { type: exponential, base: 500ms, max: 1m, jitter: 0.5 } }",
            RetryPolicy(5, Backoff.exponential(0.5, 60.0, jitter=0.5)),
        ),
        (
            "{ attempts: 6, backoff: { type: linear, increment: 1m30s, max: 1h } }",
            RetryPolicy(6, Backoff.linear(90.0, 3600.0)),
        ),
    ],
    ids=["shorthand", "attempts-only", "fixed", "exponential", "linear"],
)
def test_retry_shorthand_and_full_form(retry: str, policy: RetryPolicy) -> None:
    definition = load(
        f"""
        workflow:
          id: retrying
          steps:
            - name: Flaky
              retry: {retry}
              config: {{ run: "curl example.com" }}
        """
    )
    assert definition.step_named("Flaky").retry == policy


@pytest.mark.parametrize(
    ("on_failure", "action"),
    [
        (None, FailureAction.FAIL_WORKFLOW),
        ("fail", FailureAction.FAIL_WORKFLOW),
        ("continue", FailureAction.CONTINUE),
        ("retry_indefinitely", FailureAction.RETRY_INDEFINITELY),
    ],
)
def test_on_failure_values(on_failure: str | None, action: FailureAction) -> None:
    line = "" if on_failure is None else f"on_failure: {on_failure}"
    definition = load(
        f"""
        workflow:
          id: failing
          steps:
            - name: Risky
              {line}
              config: {{ run: "false" }}
        """
    )
    assert definition.step_named("Risky").on_failure is action


def test_timeout_at_the_step_or_in_its_config() -> None:
    definition = load(
        """
        workflow:
          id: timed
          steps:
            - name: AtStep
              timeout: 1m30s
              config: { run: "sleep 1" }
            - name: InConfig
              config: { run: "sleep 1", timeout: 250ms }
            - name: InDeno
              type: deno
              config: { script: "1", timeout: 2 }
            - name: Unlimited
              config: { run: "true" }
        """
    )
    assert definition.step_named("AtStep").timeout == 90.0
    assert definition.step_named("InConfig").timeout == 0.25
    assert definition.step_named("InDeno").timeout == 2.0
    assert definition.step_named("Unlimited").timeout is None


def test_timeout_at_the_step_and_in_its_config_at_once_is_an_error() -> None:
    with pytest.raises(DefinitionError, match="timeout is given twice") as info:
        load(
            """
            workflow:
              id: timed
              steps:
                - name: Both
                  timeout: 5s
                  config: { run: "sleep 1", timeout: 3s }
            """
        )
    assert info.value.step_name == "Both" and info.value.line == 5


CONFIGURED = """
    workflow:
      id: deploy
      version: ${{ config.version }}
      steps:
        - name: Push
          retry: ${{ config.attempts }}
          config:
            run: "deploy --to ${{ config.target }} --tag v${{config.version}}"
            timeout: ${{ config.limit }}
"""


def test_config_values_replace_whole_values_with_their_type_and_text_inside_strings() -> None:
    config = {"version": 7, "attempts": 2, "target": "prod eu", "limit": "30s"}
    definition = load(CONFIGURED, config)
    assert definition.version == 7  # a whole value keeps its type: an int, not "7"
    push = definition.step_named("Push")
    assert push.retry is not None and push.retry.max_attempts == 2
    assert push.timeout == 30.0
    body = push.factory()
    assert isinstance(body, ShellStep)
    assert body.spec.settings.run == "deploy --to prod eu --tag v7"  # type: ignore[union-attr]


def test_two_expressions_side_by_side_are_two_values() -> None:
    # Regression: a lazy fullmatch once read "${{ a }}${{ b }}" as one malformed expression.
    definition = load(
        """
        workflow:
          id: joined
          steps:
            - name: First
              config: { run: "${{ config.a }}${{ config.b }}" }
            - name: Second
              config: { run: "${{ data.a }}${{ data.b }}" }
        """,
        {"a": "x", "b": 1},
    )
    first = definition.step_named("First").factory()
    second = definition.step_named("Second").factory()
    assert first.spec.settings.run == "x1"  # type: ignore[attr-defined]
    assert second.spec.settings.run == "${{ data.a }}${{ data.b }}"  # type: ignore[attr-defined]


def test_the_source_travels_with_the_definition() -> None:
    config = {"version": 7, "attempts": 2, "target": "prod", "limit": "30s"}
    definition = load(CONFIGURED, config)
    source = definition.source
    assert source is not None
    assert source.kind == SOURCE_KIND == "yaml"
    assert source.text == textwrap.dedent(CONFIGURED)  # the text as written, not substituted
    assert dict(source.config) == config
    assert source.path == "flow.yaml"


def test_the_source_digest_is_stable_and_changes_with_the_config() -> None:
    config = {"version": 7, "attempts": 2, "target": "prod", "limit": "30s"}
    first = load(CONFIGURED, config)
    again = load(CONFIGURED, dict(reversed(config.items())))  # key order does not matter
    other = load(CONFIGURED, {**config, "target": "staging"})
    assert first.source is not None and again.source is not None and other.source is not None
    assert first.source.digest == again.source.digest
    assert first.fingerprint == again.fingerprint
    assert other.source.digest != first.source.digest
    assert other.fingerprint != first.fingerprint


def test_data_defaults_reach_the_data_model() -> None:
    definition = load(
        """
        workflow:
          id: with-data
          data:
            region: eu
            replicas: 3
            tags: [a, b]
          steps:
            - name: Show
              config: { run: "echo ${{ data.region }}" }
        """
    )
    model = definition.data_type
    assert issubclass(model, YamlData)
    assert model.model_validate({}).values() == {"region": "eu", "replicas": 3, "tags": ["a", "b"]}
    given = model.model_validate({"replicas": 5, "extra": True}).values()
    assert given == {"region": "eu", "replicas": 5, "tags": ["a", "b"], "extra": True}
    # Each instance gets its own copy of the defaults.
    one = model.model_validate({})
    one.tags.append("c")  # type: ignore[attr-defined]
    assert model.model_validate({}).values()["tags"] == ["a", "b"]


def test_workflow_and_step_env() -> None:
    definition = load(
        """
        workflow:
          id: envs
          env: { STAGE: prod, RETRIES: 3, DEBUG: false }
          steps:
            - name: Plain
              config: { run: "env" }
            - name: Own
              env: { STAGE: test, WHO: "${{ data.user }}" }
              config: { run: "env" }
        """
    )
    plain = definition.step_named("Plain").factory()
    own = definition.step_named("Own").factory()
    assert isinstance(plain, ShellStep) and isinstance(own, ShellStep)
    # Workflow env values are text as the process will see them.
    assert plain.workflow_env == {"STAGE": "prod", "RETRIES": "3", "DEBUG": "false"}
    assert plain.spec.env == {}
    assert own.workflow_env == plain.workflow_env
    assert own.spec.env == {"STAGE": "test", "WHO": "${{ data.user }}"}  # read at run time


def test_an_if_condition_becomes_a_run_if() -> None:
    definition = load(
        """
        workflow:
          id: conditional
          steps:
            - name: Always
              config: { run: "true" }
            - name: Sometimes
              if: "data.deploy == true && ${{ config.stage }} != 'dev'"
              config: { run: "true" }
        """,
        {"stage": "prod"},
    )
    assert definition.step_named("Always").run_if is None
    run_if = definition.step_named("Sometimes").run_if
    assert run_if is not None

    def ctx(**data: Any) -> Any:
        return SimpleNamespace(data=definition.data_type.model_validate(data))

    assert run_if(ctx(deploy=True)) is True
    assert run_if(ctx(deploy=False)) is False
