"""Steering runs that a ``wfe worker`` process executes: start, suspend, resume,
terminate, status, list and publish, each a separate ``wfe`` process."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.crash.procs import wait_until
from wfe import WorkflowClient
from wfe_core.models import WorkflowStatus

from .conftest import DEADLINE, Cli, process_gone, write

CONTROLLED = """\
workflow:
  id: controlled
  data: { tag: none }
  steps:
    - name: Nap
      config:
        run: |
          echo $$ > "nap-${{ data.tag }}.pid"
          touch "started-${{ data.tag }}"
          while [ ! -f "go-${{ data.tag }}" ]; do sleep 0.1; done
    - name: Wake
      config:
        run: |
          touch "finished-${{ data.tag }}"
"""

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.multiproc
async def test_start_suspend_resume_terminate_list_publish(
    cli: Cli, client: WorkflowClient, tmp_path: Path, step_groups: list[int]
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    write(flows, "controlled.yaml", CONTROLLED)
    # A short lease: a terminated run's step is cancelled when its lease is next renewed.
    worker = cli.spawn("worker", "--workflows", str(flows), "--lease", "5", name="worker")
    worker.wait_for_output("serving")

    started = cli.many(
        ["start", "flows/controlled.yaml", "--input", "tag=s"],
        ["start", "flows/controlled.yaml", "--input", "tag=t"],
    )
    for done in started:
        assert done.code == 0 and UUID.match(done.stdout.strip()), done.explain()
    suspended, terminated = (done.stdout.strip() for done in started)
    await wait_until(
        lambda: (tmp_path / "started-s").exists() and (tmp_path / "started-t").exists(),
        DEADLINE,
        lambda: f"both runs in step Nap; the worker printed:\n{worker.output()}",
    )
    naps = {tag: int((tmp_path / f"nap-{tag}.pid").read_text()) for tag in "st"}
    step_groups.extend(naps.values())  # killing the worker at teardown does not reach them

    for done in cli.many(["suspend", suspended], ["terminate", terminated]):
        assert done.code == 0, done.explain()
    # Suspending lets the running step finish and commit; nothing after it starts.
    (tmp_path / "go-s").touch()

    async def nap_committed() -> bool:
        steps = await client.get_steps(suspended)
        return any(s.name == "Nap" and s.status == "COMPLETE" for s in steps)

    await wait_until(nap_committed, DEADLINE, "step Nap of the suspended run committed")
    instance = await client.get_workflow(suspended)
    assert instance.status is WorkflowStatus.SUSPENDED
    later = [(s.name, s.status) for s in await client.get_steps(suspended) if s.name != "Nap"]
    assert later in ([], [("Wake", "PENDING")]), later
    assert not (tmp_path / "finished-s").exists()
    # Terminating cancels the running step: its process group is killed.
    await wait_until(lambda: process_gone(naps["t"]), DEADLINE, "the terminated run's step is gone")

    resumed = cli("resume", suspended)
    assert resumed.code == 0, resumed.explain()
    finished = await client.wait_for_completion(suspended, timeout=60)
    assert finished.status is WorkflowStatus.COMPLETE, worker.output()
    assert (tmp_path / "finished-s").exists()
    assert (await client.get_workflow(terminated)).status is WorkflowStatus.TERMINATED
    assert not (tmp_path / "finished-t").exists()

    complete, gone, shown, published = cli.many(
        ["list", "--status", "complete"],
        ["list", "--status", "terminated"],
        ["status", terminated],
        ["publish", "order-paid", "o-1", "--data", '{"a":1}'],
    )
    assert shown.code == 0 and "status      TERMINATED" in shown.stdout, shown.explain()
    assert complete.code == 0, complete.explain()
    assert [row.split()[0] for row in complete.stdout.splitlines()[1:]] == [suspended]
    assert [row.split()[0] for row in gone.stdout.splitlines()[1:]] == [terminated]
    assert published.code == 0, published.explain()
    event_id = published.stdout.strip()
    assert event_id and len(event_id.split()) == 1, published.explain()


def test_unknown_workflow_id_is_a_user_error(cli: Cli) -> None:
    unknown = str(uuid.uuid4())
    commands = [["status", unknown], ["terminate", unknown], ["status", "not-a-workflow-id"]]

    for done in cli.many(*commands):
        message = done.user_error()
        assert done.args[1] in message, done.explain()
