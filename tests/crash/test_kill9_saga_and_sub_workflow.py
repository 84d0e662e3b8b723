"""Kill -9 in the middle of a saga's compensation and in the middle of a sub-workflow:
another host resumes each and finishes with the right data; committed steps never run
again."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .checks import tally
from .procs import HostProc, host_starter, kill9, read_history, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(90)]

LEASE = 1.0
POLL = 0.1


def started(history: Path, step: str) -> bool:
    return any(r["step"] == step and r["event"] == "start" for r in read_history(history))


def starts(history: Path, wf: str) -> dict[str, int]:
    return {step: n for (_, step), n in tally(read_history(history), "start", wf).items()}


async def test_kill9_mid_compensation_resumes_compensating(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    start = host_starter(db_url, history, tmp_path, host_procs, lease=LEASE, poll=POLL)
    a = await start("host-a", "--hold-undo", "b")
    wid = await client.start_workflow("sagaflow", {})
    await wait_until(lambda: started(history, "undo:b"), 30, "undo:b starts on host A")
    kill9(a)
    stored = await client.get_workflow(wid)
    assert stored.status is WorkflowStatus.RUNNABLE
    assert stored.data == {"booked": ["a", "b", "c"], "undone": ["c"]}  # undo:c committed

    b = await start("host-b")
    done = await client.wait_for_completion(wid, 60)
    assert done.status is WorkflowStatus.FAILED
    assert "saga 'trip' rolled back" in (done.error or "")
    assert done.data == {"booked": ["a", "b", "c"], "undone": ["c", "b", "a"]}
    # At-least-once bodies: only the compensation cut short by the kill ran twice.
    assert starts(history, wid) == {
        "book:a": 1,
        "book:b": 1,
        "book:c": 1,
        "refuse": 1,
        "undo:c": 1,
        "undo:b": 2,
        "undo:a": 1,
    }
    assert b.alive(), b.stderr()


async def test_kill9_mid_sub_workflow_resumes_parent_and_child(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    start = host_starter(db_url, history, tmp_path, host_procs, lease=LEASE, poll=POLL)
    a = await start("host-a", "--hold-child-step", "c2")
    parent_id = await client.start_workflow("parentflow", {"n": 1})
    await wait_until(lambda: started(history, "child:c2"), 30, "child step c2 starts on host A")
    kill9(a)
    children = await client.list_workflows(definition_id="childflow")
    assert len(children) == 1
    child_id = children[0].id
    assert children[0].data == {"n": 12, "result": 0}  # input n=2, c1 committed

    b = await start("host-b")
    done = await client.wait_for_completion(parent_id, 60)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert done.data == {"n": 2, "result": 1112}
    child = await client.get_workflow(child_id)
    assert child.status is WorkflowStatus.COMPLETE and child.parent_id == parent_id
    assert len(await client.list_workflows(definition_id="childflow")) == 1  # started once
    assert starts(history, parent_id) == {"parent:prepare": 1, "parent:finish": 1}
    assert starts(history, child_id) == {"child:c1": 1, "child:c2": 2, "child:c3": 1}
    assert b.alive(), b.stderr()
