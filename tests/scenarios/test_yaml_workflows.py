"""YAML workflows on a host, on every backend: outputs flow between steps, an unknown
``${{ data.… }}`` fails its step once and for all, ``if:`` skips, ``on_failure: continue``,
and a bad file changes nothing stored (RELIABILITY §R10).

It lives with the scenarios for their ``make_host`` fixture and ``snapshot`` helper; the
loader's own tests are in ``tests/yaml``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.yaml.test_loader_errors import CASES, FILE
from wfe import DefinitionError, WorkflowHost, WorkflowInstance, WorkflowStatus
from wfe_yaml import load_workflow_text

from .conftest import HostFactory, snapshot


def load(text: str, config: dict[str, Any] | None = None) -> Any:
    return load_workflow_text(textwrap.dedent(text), config, path="flow.yaml")


async def run(host: WorkflowHost, text: str, data: dict[str, Any]) -> WorkflowInstance:
    definition = load(text)
    host.register(definition)
    workflow_id = await host.start_workflow(definition.id, data)
    return await host.wait_for_completion(workflow_id, 60)


def values(instance: WorkflowInstance) -> dict[str, Any]:
    data = instance.data
    return data if isinstance(data, dict) else data.model_dump(mode="json")


async def steps_of(host: WorkflowHost, instance: WorkflowInstance) -> dict[str, Any]:
    return {step.name: step for step in await host.get_steps(instance.id)}


OUTPUTS = """
    workflow:
      id: outputs-flow
      env: { STAGE: prod }
      steps:
        - name: Produce
          env: { WHO: "${{ data.user }}" }
          config:
            run: |
              echo "##wfe[output greeting]hello $WHO"
              echo "##wfe[output stage]$STAGE"
        - name: Consume
          config:
            run: |
              test "${{ steps.Produce.outputs.greeting }}" = "hello ada"
              printf '##wfe[output echoed]%s/%s\\n' ${{ data.greeting }} "${{ data.stage }}"
"""


async def test_outputs_of_a_shell_step_reach_a_later_step(make_host: HostFactory) -> None:
    async with make_host() as host:
        done = await run(host, OUTPUTS, {"user": "ada"})
        steps = await steps_of(host, done)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    data = values(done)
    assert data["greeting"] == "hello ada" and data["stage"] == "prod"
    assert data["echoed"] == "hello ada/prod"  # unquoted, the value still stays one word
    assert data["steps"]["Produce"]["outputs"] == {"greeting": "hello ada", "stage": "prod"}
    assert data["steps"]["Consume"]["outputs"] == {"echoed": "hello ada/prod"}
    assert steps["Consume"].outcome["exit_code"] == 0
    assert "##wfe[output echoed]hello ada/prod" in steps["Consume"].outcome["stdout"]


UNKNOWN_DATA = """
    workflow:
      id: unknown-data
      steps:
        - name: Greet
          retry: 3
          config: { run: "echo hello ${{ data.nope }}" }
        - name: After
          config: { run: "echo never" }
"""


async def test_an_unknown_data_variable_fails_its_step_at_run_time_without_retries(
    make_host: HostFactory,
) -> None:
    async with make_host() as host:
        done = await run(host, UNKNOWN_DATA, {"name": "ada"})
        steps = await steps_of(host, done)
    assert done.status is WorkflowStatus.FAILED
    assert done.error is not None
    assert "'Greet'" in done.error and "${{ data.nope }}" in done.error
    assert "data has name" in done.error  # and what there is instead
    greet = steps["Greet"]
    assert greet.status == "FAILED" and greet.attempt == 1  # permanent: retry: 3 unused
    assert greet.error is not None and "${{ data.nope }}" in greet.error
    assert "After" not in steps


CONDITIONAL = """
    workflow:
      id: conditional
      steps:
        - name: Build
          config: { run: "echo '##wfe[output built]yes'" }
        - name: Deploy
          if: "data.deploy == true && ${{ steps.Build.outputs.built }} == 'yes'"
          config: { run: "echo '##wfe[output deployed]yes'" }
        - name: Report
          config: { run: "echo '##wfe[output reported]yes'" }
"""


@pytest.mark.parametrize("deploy", [False, True])
async def test_if_false_skips_a_step_and_its_dependents_still_run(
    make_host: HostFactory, deploy: bool
) -> None:
    async with make_host() as host:
        done = await run(host, CONDITIONAL, {"deploy": deploy})
        steps = await steps_of(host, done)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert steps["Deploy"].status == ("COMPLETE" if deploy else "SKIPPED")
    assert steps["Report"].status == "COMPLETE"
    data = values(done)
    assert ("deployed" in data) is deploy
    assert data["reported"] == "yes"


CONTINUE = """
    workflow:
      id: carry-on
      steps:
        - name: Flaky
          on_failure: continue
          config: { run: "echo trying; exit 3" }
        - name: Next
          config: { run: "echo '##wfe[output next]ran'" }
"""


async def test_on_failure_continue_lets_the_workflow_go_on(make_host: HostFactory) -> None:
    async with make_host() as host:
        done = await run(host, CONTINUE, {})
        steps = await steps_of(host, done)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert steps["Flaky"].status == "FAILED" and steps["Flaky"].attempt == 1
    assert steps["Flaky"].error is not None and "exit code 3" in steps["Flaky"].error
    assert values(done)["next"] == "ran"


async def test_a_shell_injection_in_the_data_stays_data(
    make_host: HostFactory, tmp_path: Path
) -> None:
    payload = '"; touch INJECTED; echo "$(touch INJECTED2)'
    text = f"""
        workflow:
          id: injection
          steps:
            - name: Echo
              config:
                working_directory: {tmp_path}
                run: |
                  printf '##wfe[output same]%s\\n' ${{{{ data.payload }}}}
                  echo "quoted: ${{{{ data.payload }}}}" > out.txt
    """
    async with make_host() as host:
        done = await run(host, text, {"payload": payload})
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert values(done)["same"] == payload
    assert (tmp_path / "out.txt").read_text() == f"quoted: {payload}\n"
    assert not (tmp_path / "INJECTED").exists() and not (tmp_path / "INJECTED2").exists()


HEALTHY = """
    workflow:
      id: healthy
      steps:
        - name: Work
          config: { run: "echo '##wfe[output done]${{ data.n }}'" }
"""

# One of each kind of problem R10 names: bad YAML, an unknown type, cycles, unknown
# dependencies, duplicates, code in data, an unknown variable.
R10_CASES = [
    "tab-indentation",
    "bad-indentation",
    "unknown-step-type",
    "cycle",
    "self-dependency",
    "depends-on-an-unknown-step",
    "duplicate-step-names",
    "unknown-config-variable",
    "data-in-a-deno-script",
]


@pytest.mark.parametrize("case", R10_CASES)
async def test_a_bad_file_changes_nothing_stored(make_host: HostFactory, case: str) -> None:
    bad = CASES[case]
    async with make_host() as host:
        first = await run(host, HEALTHY, {"n": 1})
        assert first.status is WorkflowStatus.COMPLETE, first.error
        before = await snapshot(host.backend)
        assert before  # the healthy workflow is there to be disturbed

        with pytest.raises(DefinitionError) as info:
            load_workflow_text(bad.document, bad.config, path=FILE)
        assert f"{FILE}:{bad.line}" in str(info.value)
        assert all(phrase in str(info.value) for phrase in bad.phrases)

        assert await snapshot(host.backend) == before
        # ... and the healthy definition still runs.
        again = await host.wait_for_completion(await host.start_workflow("healthy", {"n": 2}), 60)
    assert again.status is WorkflowStatus.COMPLETE, again.error
    assert values(again)["done"] == "2"
