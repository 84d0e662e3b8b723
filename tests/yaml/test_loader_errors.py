"""Bad workflow files: every problem is a DefinitionError naming the file, the line, the
step (where there is one) and the problem.

Pure unit tests (no backend fixture, so each runs once). In each document below the line
the error must point at ends with ``#<``; the expected line number is read from there.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from wfe_core.errors import DefinitionError
from wfe_yaml import load_workflow, load_workflow_text

FILE = "flow.yaml"
MARK = "#<"


@dataclass(frozen=True)
class Bad:
    """A bad document and what its error must say."""

    text: str
    phrases: tuple[str, ...]
    step: str | None = None
    config: dict[str, object] | None = None

    @property
    def document(self) -> str:
        return textwrap.dedent(self.text).lstrip("\n")

    @property
    def line(self) -> int | None:
        marked = [n for n, line in enumerate(self.document.splitlines(), 1) if MARK in line]
        assert len(marked) <= 1, "mark one line at most"
        return marked[0] if marked else None


def steps(body: str) -> str:
    """A workflow whose ``steps:`` list is ``body`` (indented as list items)."""
    items = textwrap.dedent(body).lstrip("\n")
    return "workflow:\n  id: flow\n  steps:\n" + textwrap.indent(items, "    ")


CASES: dict[str, Bad] = {
    # -- the YAML itself ---------------------------------------------------------------
    "tab-indentation": Bad(
        "workflow:\n  id: flow\n\tsteps: []  #<\n",
        ("invalid YAML", "'\\t'"),
    ),
    "bad-indentation": Bad(
        """
        workflow:
          id: flow
           steps: []  #<
        """,
        ("invalid YAML", "mapping values are not allowed"),
    ),
    "unclosed-flow-mapping": Bad(
        """
        workflow:
          id: flow
          steps:
            - { name: A, config: { run: x ]  #<
        """,
        ("invalid YAML", "flow mapping", "expected ',' or '}'"),
    ),
    "control-character": Bad(  # PyYAML refuses it before parsing: found by the fuzzer
        "workflow:\n  id: flow\n  steps: \x1f  #<\n",
        ("invalid YAML", "#x001f"),
    ),
    "empty-file": Bad("", ("empty",)),
    "only-a-comment": Bad("# nothing here\n", ("empty",)),
    "top-level-list": Bad("- workflow  #<\n- steps\n", ("expected a mapping", "list")),
    "top-level-scalar": Bad("just text  #<\n", ("expected a mapping", "str")),
    "two-documents": Bad(
        "workflow: {id: a}\n---  #<\nworkflow: {id: b}\n",
        ("invalid YAML", "single document"),
    ),
    "duplicate-yaml-key": Bad(
        steps(
            """
            - name: A
              config:
                run: echo one
                run: echo two  #<
            """
        ),
        ("duplicate key 'run'", "first at line 6"),
    ),
    # -- the shape of the file ---------------------------------------------------------
    "no-workflow-key": Bad("flow:  #<\n  id: x\n", ("'workflow' is missing", "flow")),
    "unknown-top-level-key": Bad(
        steps("- { name: A, config: { run: x } }\n") + "extras: true  #<\n",
        ("extras", "unknown key"),
    ),
    "unknown-workflow-key": Bad(
        "workflow:\n  id: flow\n  stpes: []  #<\n  steps: [{name: A, config: {run: x}}]\n",
        ("stpes", "unknown key"),
    ),
    "missing-workflow-id": Bad(
        "workflow:  #<\n  steps: [{name: A, config: {run: x}}]\n",
        ("'id' is missing",),
    ),
    "version-not-a-number": Bad(
        'workflow:\n  id: flow\n  version: "x"  #<\n  steps: [{name: A, config: {run: x}}]\n',
        ("version", "valid integer", "'x'"),
    ),
    "version-zero": Bad(
        "workflow:\n  id: flow\n  version: 0  #<\n  steps: [{name: A, config: {run: x}}]\n",
        ("version", "greater than or equal to 1"),
    ),
    "version-a-boolean": Bad(
        "workflow:\n  id: flow\n  version: true  #<\n  steps: [{name: A, config: {run: x}}]\n",
        ("version", "not true/false"),
    ),
    "version-too-large": Bad(
        "workflow:\n  id: flow\n  version: 9999999999 #<\n  steps: [{name: A, config: {run: y}}]\n",
        ("version", "less than or equal"),
    ),
    "data-steps-reserved": Bad(
        "workflow:\n  id: flow\n  data: {steps: 1}  #<\n  steps: [{name: A, config: {run: x}}]\n",
        ("'steps' is reserved",),
    ),
    "reference-in-shell-arithmetic": Bad(
        steps(
            """
            - name: Count
              config:
                run: echo $(( ${{ data.n }} + 1 ))  #<
            """
        ),
        ("shell arithmetic", "can run commands"),
        step="Count",
    ),
    "reference-in-quoted-heredoc": Bad(
        steps(
            """
            - name: Quote
              config:
                run: |  #<
                  cat <<'EOF'
                  ${{ data.x }}
                  EOF
            """
        ),
        ("quoted heredoc",),
        step="Quote",
    ),
    "timeout-zero": Bad(
        steps("- { name: A, timeout: 0, config: { run: x } }  #<\n"),
        ("timeout", "greater than 0"),
        step="A",
    ),
    "steps-a-mapping": Bad(
        "workflow:\n  id: flow\n  steps: {}  #<\n",
        ("steps", "valid list"),
    ),
    "steps-empty": Bad(
        "workflow:\n  id: flow\n  steps: []  #<\n",
        ("steps", "at least 1"),
    ),
    "step-not-a-mapping": Bad(steps("- just a string  #<\n"), ("steps.0", "dictionary")),
    "unknown-step-key": Bad(
        steps(
            """
            - name: Build
              comand: make  #<
              config: { run: make }
            """
        ),
        ("comand", "unknown key"),
        step="Build",
    ),
    "step-without-name": Bad(
        steps("- config: { run: x }  #<\n"),
        ("'name' is missing",),
    ),
    "step-without-config": Bad(
        steps("- name: Build  #<\n"),
        ("'config' is missing",),
        step="Build",
    ),
    "unknown-step-type": Bad(
        steps(
            """
            - name: Build
              type: foo  #<
              config: { run: make }
            """
        ),
        ("'foo'", "'shell' or 'deno'"),
        step="Build",
    ),
    "missing-config-run": Bad(
        steps(
            """
            - name: Build
              config:  #<
                shell: bash
            """
        ),
        ("config", "'run' is missing"),
        step="Build",
    ),
    "missing-config-script": Bad(
        steps(
            """
            - name: Notify
              type: deno
              config: { timeout: 5s }  #<
            """
        ),
        ("config", "'script' is missing"),
        step="Notify",
    ),
    "config-key-of-another-type": Bad(
        steps(
            """
            - name: Build
              config:
                run: make
                script: "console.log(1)"  #<
            """
        ),
        ("config.script", "unknown key"),
        step="Build",
    ),
    "config-run-empty": Bad(
        steps(
            """
            - name: Build
              config:
                run: ""  #<
            """
        ),
        ("config.run", "at least 1 character"),
        step="Build",
    ),
    "deno-permission-wrong-type": Bad(
        steps(
            """
            - name: Notify
              type: deno
              config:
                script: "1"
                permissions:
                  net: yes  #<
            """
        ),
        ("permissions.net", "valid list"),
        step="Notify",
    ),
    "bad-duration": Bad(
        steps(
            """
            - name: Build
              timeout: 5 parsecs  #<
              config: { run: make }
            """
        ),
        ("timeout", "'5 parsecs' is not a duration"),
        step="Build",
    ),
    "bad-duration-in-config": Bad(
        steps(
            """
            - name: Build
              config:
                run: make
                timeout: soon  #<
            """
        ),
        ("config.timeout", "'soon' is not a duration"),
        step="Build",
    ),
    "negative-duration": Bad(
        steps(
            """
            - name: Build
              timeout: -3  #<
              config: { run: make }
            """
        ),
        ("timeout", "finite time >= 0"),
        step="Build",
    ),
    "retry-zero": Bad(
        steps(
            """
            - name: Build
              retry: 0  #<
              config: { run: make }
            """
        ),
        ("retry", "greater than or equal to 1"),
        step="Build",
    ),
    "retry-backoff-mixed-up": Bad(
        steps(
            """
            - name: Build
              retry:
                attempts: 3
                backoff: { type: fixed, base: 2s }  #<
              config: { run: make }
            """
        ),
        ("fixed back-off takes 'delay', not 'base'",),
        step="Build",
    ),
    "unknown-on-failure": Bad(
        steps(
            """
            - name: Build
              on_failure: explode  #<
              config: { run: make }
            """
        ),
        ("'explode'", "'continue'"),
        step="Build",
    ),
    "step-name-with-a-space": Bad(
        steps("- name: my step  #<\n  config: { run: x }\n"),
        ("name", "pattern", "'my step'"),
        step="my step",
    ),
    "step-name-with-a-dot": Bad(
        steps("- name: a.b  #<\n  config: { run: x }\n"),
        ("name", "pattern", "'a.b'"),
        step="a.b",
    ),
    "env-name-not-a-variable": Bad(
        "workflow:\n  id: flow\n  env: { MY-VAR: 1 }  #<\n  steps: [{name: A, config: {run: x}}]\n",
        ("env.MY-VAR", "pattern"),
    ),
    # -- the graph ---------------------------------------------------------------------
    "duplicate-step-names": Bad(
        steps(
            """
            - name: Build
              config: { run: make }
            - name: Build  #<
              config: { run: make again }
            """
        ),
        ("duplicate step name 'Build'", "first at line 4"),
        step="Build",
    ),
    "group-named-like-a-step": Bad(
        steps(
            """
            - name: Checks
              config: { run: make }
            - name: Checks  #<
              parallel:
                - { name: Lint, config: { run: lint } }
            """
        ),
        ("duplicate step name 'Checks'",),
        step="Checks",
    ),
    "depends-on-an-unknown-step": Bad(
        steps(
            """
            - name: Build
              config: { run: make }
            - name: Ship
              depends_on: [Biuld]  #<
              config: { run: ship }
            """
        ),
        ("depends_on names 'Biuld'", "not a step", "Build, Ship"),
        step="Ship",
    ),
    "depends-on-any-an-unknown-step": Bad(
        steps(
            """
            - name: Ship
              depends_on_any: [Nope]  #<
              config: { run: ship }
            """
        ),
        ("depends_on_any names 'Nope'",),
        step="Ship",
    ),
    "cycle": Bad(
        steps(
            """
            - name: A
              depends_on: [B]  #<
              config: { run: a }
            - name: B
              depends_on: [A]
              config: { run: b }
            """
        ),
        ("dependency cycle", "A -> B -> A"),
        step="A",
    ),
    "self-dependency": Bad(
        steps(
            """
            - name: Loop
              depends_on: [Loop]  #<
              config: { run: again }
            """
        ),
        ("dependency cycle", "Loop -> Loop"),
        step="Loop",
    ),
    # -- ${{ }} references -------------------------------------------------------------
    "unknown-config-variable": Bad(
        steps(
            """
            - name: Deploy
              config:
                run: deploy ${{ config.nope }}  #<
            """
        ),
        ("${{ config.nope }}", "--config nope=VALUE", "given: target"),
        step="Deploy",
        config={"target": "prod"},
    ),
    "malformed-variable": Bad(
        steps(
            """
            - name: Deploy
              config:
                run: deploy ${{ foo.bar }}  #<
            """
        ),
        ("${{ foo.bar }}", "starts with config., data. or steps."),
        step="Deploy",
    ),
    "malformed-step-output": Bad(
        steps(
            """
            - name: A
              config: { run: a }
            - name: B
              config:
                run: echo ${{ steps.A.result }}  #<
            """
        ),
        ("steps.A.result", "steps.NAME.outputs.KEY"),
        step="B",
    ),
    "output-of-a-later-step": Bad(
        steps(
            """
            - name: Early
              config:
                run: echo ${{ steps.Late.outputs.k }}  #<
            - name: Late
              config: { run: late }
            """
        ),
        ("'Late'", "does not run before 'Early'", "depends_on"),
        step="Early",
    ),
    "output-of-a-parallel-sibling": Bad(
        steps(
            """
            - parallel:
                - name: Left
                  config: { run: left }
                - name: Right
                  config:
                    run: echo ${{ steps.Left.outputs.k }}  #<
            """
        ),
        ("'Left'", "does not run before 'Right'"),
        step="Right",
    ),
    "output-of-no-step": Bad(
        steps(
            """
            - name: A
              env:
                X: ${{ steps.Ghost.outputs.k }}  #<
              config: { run: a }
            """
        ),
        ("steps.Ghost", "names no step"),
        step="A",
    ),
    "data-in-a-deno-script": Bad(
        steps(
            """
            - name: Notify
              type: deno
              config:
                script: |  #<
                  console.log("${{ data.user }}")
            """
        ),
        ("Deno", "data must not become code", "Wfe.getData()"),
        step="Notify",
    ),
    "step-output-in-workflow-env": Bad(
        "workflow:\n  id: flow\n  env:\n    X: ${{ steps.A.outputs.k }}  #<\n"
        "  steps: [{name: A, config: {run: x}}]\n",
        ("workflow env X", "not allowed here"),
    ),
    # -- if: conditions ----------------------------------------------------------------
    "if-calls-a-function": Bad(
        steps(
            """
            - name: Maybe
              if: "len(data.items) > 0"  #<
              config: { run: x }
            """
        ),
        ("len(data.items) > 0", "Call is not allowed"),
        step="Maybe",
    ),
    "if-does-arithmetic": Bad(
        steps(
            """
            - name: Maybe
              if: data.x + 1  #<
              config: { run: x }
            """
        ),
        ("data.x + 1", "BinOp is not allowed"),
        step="Maybe",
    ),
    "if-syntax-error": Bad(
        steps(
            """
            - name: Maybe
              if: "data.x == (1"  #<
              config: { run: x }
            """
        ),
        ("not a valid expression",),
        step="Maybe",
    ),
    "if-imports-os": Bad(
        steps(
            """
            - name: Maybe
              if: "__import__('os').system('touch /tmp/pwned')"  #<
              config: { run: x }
            """
        ),
        ("is not allowed",),
        step="Maybe",
    ),
    "if-unknown-config": Bad(
        steps(
            """
            - name: Maybe
              if: "config.stage == 'prod'"  #<
              config: { run: x }
            """
        ),
        ("unknown config.stage",),
        step="Maybe",
    ),
    "if-not-text": Bad(
        steps(
            """
            - name: Maybe
              if: [a, b]  #<
              config: { run: x }
            """
        ),
        ("if", "valid string"),
        step="Maybe",
    ),
    "if-nested-too-deeply": Bad(
        steps(
            f"""
            - name: Maybe
              if: "{"not " * 1000}data.x"  #<
              config: {{ run: x }}
            """
        ),
        ("nested too deeply",),
        step="Maybe",
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_document_is_a_definition_error_naming_file_line_step_and_problem(
    case: Bad,
) -> None:
    with pytest.raises(DefinitionError) as info:
        load_workflow_text(case.document, case.config, path=FILE)
    error, message = info.value, str(info.value)
    assert type(error) is DefinitionError
    assert error.path == FILE
    assert error.line == case.line, message
    assert message.startswith(FILE if case.line is None else f"{FILE}:{case.line}"), message
    assert error.step_name == case.step, message
    if case.step is not None:
        assert f"step {case.step!r}" in message
    for phrase in case.phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"


def test_the_table_marks_a_line_wherever_the_yaml_has_one() -> None:
    # A guard on the table itself: only files without lines may leave the mark out.
    unmarked = {name for name, case in CASES.items() if case.line is None}
    assert unmarked == {"empty-file", "only-a-comment"}


def test_a_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(DefinitionError) as info:
        load_workflow(missing)
    assert info.value.path == str(missing) and info.value.line is None
    assert str(info.value).startswith(f"{missing}: cannot read the workflow file")
    assert "No such file" in str(info.value)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("workflow:\n  id: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DefinitionError) as info:
        load_workflow(latin)
    assert info.value.path == str(latin)
    assert str(info.value).startswith(f"{latin}: cannot read the workflow file")
    assert "utf-8" in str(info.value)


def test_a_directory_is_not_a_workflow_file(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read the workflow file"):
        load_workflow(tmp_path)


def test_an_unknown_data_variable_is_not_a_load_error() -> None:
    # The data exists only when the workflow runs: tests/scenarios/test_yaml_workflows.py
    # shows the step failing then, naming the variable.
    text = steps("- name: A\n  config: { run: 'echo ${{ data.nope }}' }\n")
    assert load_workflow_text(text, path=FILE).step_named("A")
