"""``wfe run`` end to end: outputs between steps, inert input, failures, retries,
timeouts and Deno permissions, each in a real ``python -m wfe`` process."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfe import WorkflowClient

from .conftest import Cli, poll, process_gone, status_data, step_row, write

OUTPUTS = """\
workflow:
  id: outputs-flow
  data: { seed: "s0" }
  steps:
    - name: First
      config:
        run: |
          echo "##wfe[output word]first-${{ data.seed }}"
    - name: Second
      config:
        run: |
          echo "##wfe[output pair]${{ steps.First.outputs.word }}+${{ data.word }}"
    - name: Third
      type: deno
      config:
        script: |
          const d = Wfe.getData();
          Wfe.setOutput("js", `${d.pair}|${d.steps.Second.outputs.pair}`.toUpperCase());
    - name: Fourth
      config:
        run: |
          echo "##wfe[output last]${{ steps.Third.outputs.js }}/${{ data.js }}"
"""


def test_outputs_flow_between_shell_and_deno_steps(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, "outputs.yaml", OUTPUTS)

    run = cli("run", "outputs.yaml", "--input", "seed=abc")

    assert run.code == 0, run.explain()
    assert "outputs-flow completed in" in run.stdout
    status = cli("status", run.workflow_id())
    assert status.code == 0, status.explain()
    assert "status      COMPLETE" in status.stdout
    for step in ("First", "Second", "Third", "Fourth"):
        assert step_row(status.stdout, step)[1:3] == ["COMPLETE", "1"], status.stdout
    data = status_data(status.stdout)
    word, pair, js = "first-abc", "first-abc+first-abc", "FIRST-ABC+FIRST-ABC|FIRST-ABC+FIRST-ABC"
    assert data["seed"] == "abc"
    assert (data["word"], data["pair"], data["js"]) == (word, pair, js)
    assert data["last"] == f"{js}/{js}"
    assert data["steps"]["First"]["outputs"] == {"word": word}
    assert data["steps"]["Third"]["outputs"] == {"js": js}
    assert data["steps"]["Fourth"]["outputs"] == {"last": f"{js}/{js}"}


HOSTILE = {
    "semi": '"; touch PWNED; echo "',
    "subst": "$(touch PWNED)",
    "tick": "`touch PWNED`",
    "quote": "x' ; touch PWNED ; '",
}

# Each value is used unquoted, inside double quotes and inside single quotes, both in an
# output line (checked in the data) and written to a file (checked byte for byte).
INJECTION_STEP = """\
          echo "##wfe[output {k}_bare]"${{{{ data.{k} }}}}
          echo "##wfe[output {k}_dq]${{{{ data.{k} }}}}"
          echo '##wfe[output {k}_sq]${{{{ data.{k} }}}}'
          printf '%s\\n' ${{{{ data.{k} }}}} > {k}.bare.txt
          printf '%s\\n' "${{{{ data.{k} }}}}" > {k}.dq.txt
          printf '%s\\n' '${{{{ data.{k} }}}}' > {k}.sq.txt
"""


async def test_input_values_reach_the_shell_as_data(
    cli: Cli, client: WorkflowClient, tmp_path: Path
) -> None:
    body = "".join(INJECTION_STEP.format(k=key) for key in HOSTILE)
    write(
        tmp_path,
        "inject.yaml",
        f"workflow:\n  id: inject\n  steps:\n    - name: Echo\n      config:\n"
        f"        run: |\n{body}",
    )

    run = cli("run", "inject.yaml", *(f"--input={k}={v}" for k, v in HOSTILE.items()))

    assert run.code == 0, run.explain()
    outputs = (await client.get_workflow(run.workflow_id())).data["steps"]["Echo"]["outputs"]
    for key, value in HOSTILE.items():
        for quoting in ("bare", "dq", "sq"):
            assert outputs[f"{key}_{quoting}"] == value, (key, quoting, outputs)
            written = (tmp_path / f"{key}.{quoting}.txt").read_text(encoding="utf-8")
            assert written == value + "\n", (key, quoting)
    assert not (tmp_path / "PWNED").exists()


FAILING = """\
workflow:
  id: failing
  steps:
    - name: Prepare
      config: { run: "echo prepared" }
    - name: Breaks
      config:
        run: |
          echo "disk on fire near sector 7" >&2
          exit 3
    - name: After
      config: { run: "touch after-ran" }
"""

CONTINUING = """\
workflow:
  id: continuing
  steps:
    - name: Breaks
      on_failure: continue
      config: { run: "exit 3" }
    - name: After
      config: { run: "touch continued" }
"""

RETRYING = """\
workflow:
  id: retrying
  steps:
    - name: Flaky
      retry: { attempts: 2, backoff: { type: fixed, delay: 0.1s } }
      config:
        run: |
          n=$(( $(cat count 2>/dev/null || echo 0) + 1 ))
          echo "$n" > count
          if [ "$n" -lt 2 ]; then echo "first try fails" >&2; exit 1; fi
          echo "##wfe[output tries]$n"
"""


def test_failures_continue_and_retry(cli: Cli, tmp_path: Path) -> None:
    for name, text in (("fail", FAILING), ("cont", CONTINUING), ("retry", RETRYING)):
        write(tmp_path, f"{name}.yaml", text)

    failed, continued, retried = cli.many(
        ["run", "fail.yaml"], ["run", "cont.yaml"], ["run", "retry.yaml"]
    )

    assert failed.code == 1, failed.explain()
    assert "Traceback" not in failed.output
    verdict = failed.stdout.strip().splitlines()[-1]
    assert "FAILED" in verdict and "'Breaks'" in verdict, failed.explain()
    assert "exit code 3" in verdict and "disk on fire near sector 7" in verdict
    assert step_row(failed.stdout, "Breaks")[1] == "FAILED"
    assert not (tmp_path / "after-ran").exists()

    assert continued.code == 0, continued.explain()
    assert "continuing completed in" in continued.stdout
    assert step_row(continued.stdout, "Breaks")[1] == "FAILED"
    assert step_row(continued.stdout, "After")[1] == "COMPLETE"
    assert (tmp_path / "continued").exists()

    assert retried.code == 0, retried.explain()
    assert step_row(retried.stdout, "Flaky")[1:3] == ["COMPLETE", "2"], retried.stdout
    assert (tmp_path / "count").read_text().strip() == "2"


TIMEOUT = """\
workflow:
  id: sleepy
  steps:
    - name: Sleeps
      timeout: 1s
      config:
        run: "sleep 300 & echo $! > bg.pid; sleep 300"
"""


def test_timeout_kills_the_step_and_its_background_children(cli: Cli, tmp_path: Path) -> None:
    write(tmp_path, "sleepy.yaml", TIMEOUT)

    run = cli("run", "sleepy.yaml")

    assert run.code == 1, run.explain()
    verdict = run.stdout.strip().splitlines()[-1]
    assert "'Sleeps'" in verdict and "timed out" in verdict, run.explain()
    background = int((tmp_path / "bg.pid").read_text())
    poll(lambda: process_gone(background), f"background sleep {background} is gone")


DENO_DENIED = """\
workflow:
  id: deno-denied
  steps:
    - name: ReadHost
      type: deno
      config:
        script: |
          Wfe.setOutput("host", Deno.readTextFileSync("/etc/hostname").trim());
"""

DENO_ALLOWED = """\
workflow:
  id: deno-allowed
  data: { n: 20 }
  steps:
    - name: ReadHost
      type: deno
      config:
        permissions: { read: ["/etc/hostname"] }
        script: |
          Wfe.setOutput("host", Deno.readTextFileSync("/etc/hostname").trim());
          Wfe.setOutput("doubled", Wfe.getData().n * 2);
"""


HOSTNAME = Path("/etc/hostname")
HOST_NAME = HOSTNAME.read_text().strip() if HOSTNAME.is_file() else None


@pytest.mark.skipif(HOST_NAME is None, reason="no /etc/hostname to read")
async def test_deno_outputs_and_read_permission(
    cli: Cli, client: WorkflowClient, tmp_path: Path
) -> None:
    write(tmp_path, "denied.yaml", DENO_DENIED)
    write(tmp_path, "allowed.yaml", DENO_ALLOWED)

    denied, allowed = cli.many(["run", "denied.yaml"], ["run", "allowed.yaml"])

    assert denied.code == 1, denied.explain()
    verdict = denied.stdout.strip().splitlines()[-1]
    assert "'ReadHost'" in verdict and "read" in verdict, denied.explain()
    assert "/etc/hostname" in verdict
    assert "permission" in verdict.lower()

    assert allowed.code == 0, allowed.explain()
    data = (await client.get_workflow(allowed.workflow_id())).data
    outputs = data["steps"]["ReadHost"]["outputs"]
    assert outputs == {"host": HOST_NAME, "doubled": 40}
