"""Runs outlive their processes and their files: ``wfe run`` resumes a killed run, and
``wfe worker`` finishes runs whose file was edited or deleted from the stored copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfe import WorkflowClient
from wfe_core.models import WorkflowStatus

from .conftest import Cli, Spawned, poll, process_gone, write

pytestmark = pytest.mark.multiproc

# Step Two appends only after `go` exists, and the test creates `go` only after the
# first process is dead: the kill always lands before the append.
BLOCKING = """\
workflow:
  id: {id}
  steps:
    - name: One
      config: {{ run: "echo {tag} >> {prefix}one-{tag}.txt" }}
    - name: Two
      config:
        run: |
          echo $$ > {prefix}two.pid
          touch {prefix}started-2
          while [ ! -f {prefix}go ]; do sleep 0.1; done
          echo {tag} >> {prefix}two-{tag}.txt
"""


def blocking(workflow_id: str, tag: str = "ran", prefix: str = "") -> str:
    return BLOCKING.format(id=workflow_id, tag=tag, prefix=prefix)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def kill_blocked_run(run: Spawned, folder: Path, prefix: str, step_groups: list[int]) -> None:
    """Wait until step Two runs, SIGKILL the run's process group, and see its step die
    with it (the step's watcher kills the step's own group when its host is gone)."""
    poll(
        lambda: (folder / f"{prefix}started-2").exists() or run.proc.poll() is not None,
        "step Two started",
    )
    assert run.proc.poll() is None, run.output()
    step = int((folder / f"{prefix}two.pid").read_text())
    step_groups.append(step)
    run.kill()
    poll(lambda: process_gone(step), "the step is gone with its wfe run")


def test_run_resumes_after_sigkill(cli: Cli, tmp_path: Path, step_groups: list[int]) -> None:
    write(tmp_path, "resume.yaml", blocking("resumable"))
    first = cli.spawn("run", "resume.yaml", name="first-run")  # the default 30 s lease
    kill_blocked_run(first, tmp_path, "", step_groups)
    started = first.workflow_id()
    (tmp_path / "go").touch()

    # 20 s to finish under a 30 s lease: only a take-over of the dead holder's lease fits.
    second = cli("run", "resume.yaml", "--timeout", "20")

    assert second.code == 0, f"{first.output()}\n{second.explain()}"
    assert f"resuming run {started}" in second.stdout, second.explain()
    assert lines(tmp_path / "one-ran.txt") == ["ran"]
    assert lines(tmp_path / "two-ran.txt") == ["ran"]
    listing = cli("list")
    assert listing.code == 0, listing.explain()
    rows = listing.stdout.strip().splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:4] == [started, "resumable", "v1", "COMPLETE"]


def test_killed_run_leaves_no_step_running(
    cli: Cli, tmp_path: Path, step_groups: list[int]
) -> None:
    """SIGKILL to ``wfe run`` (its whole process group) must not leave its step running:
    an orphaned step would run on alongside the one a resumed run starts again."""
    write(tmp_path, "blocked.yaml", blocking("orphans"))
    run = cli.spawn("run", "blocked.yaml", name="run")
    poll(
        lambda: (tmp_path / "started-2").exists() or run.proc.poll() is not None,
        "step Two started",
    )
    step = int((tmp_path / "two.pid").read_text())
    step_groups.append(step)

    run.kill()

    poll(lambda: process_gone(step), f"step process {step} gone after its wfe run", 10.0)


async def test_worker_finishes_runs_from_stored_copies(
    cli: Cli, client: WorkflowClient, tmp_path: Path, step_groups: list[int]
) -> None:
    """One run's file is edited (same id and version), another's deleted; a worker on the
    folder finishes both with the commands they started with."""
    flows = tmp_path / "flows"
    flows.mkdir()
    edited = write(flows, "edited.yaml", blocking("stored-edited", "old", "e-"))
    deleted = write(flows, "deleted.yaml", blocking("stored-deleted", "old", "d-"))
    # The default 30 s lease: the worker takes over from the dead `wfe run` at once.
    runs = {
        prefix: cli.spawn("run", str(path), name=f"{prefix}run")
        for prefix, path in (("e-", edited), ("d-", deleted))
    }
    for prefix, run in runs.items():
        kill_blocked_run(run, tmp_path, prefix, step_groups)
    ids = {prefix: run.workflow_id() for prefix, run in runs.items()}
    write(flows, "edited.yaml", blocking("stored-edited", "new", "e-"))
    deleted.unlink()
    for prefix in runs:
        (tmp_path / f"{prefix}go").touch()

    worker = cli.spawn("worker", "--workflows", str(flows), name="worker")
    worker.wait_for_output("serving")

    for prefix, workflow_id in ids.items():
        # 20 s under a 30 s lease: only a take-over of the dead holder's lease fits.
        finished = await client.wait_for_completion(workflow_id, timeout=20)
        assert finished.status is WorkflowStatus.COMPLETE, (prefix, finished, worker.output())
        assert lines(tmp_path / f"{prefix}one-old.txt") == ["old"], prefix
        assert lines(tmp_path / f"{prefix}two-old.txt") == ["old"], (prefix, worker.output())
        assert not (tmp_path / f"{prefix}two-new.txt").exists(), prefix
