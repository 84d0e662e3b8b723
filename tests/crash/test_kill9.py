"""Kill -9 a host in the middle of a step; another host finishes the workflow
(SPEC §4 guarantees 1 and 2; RELIABILITY.md R1, invariants I1 and I2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .checks import assert_one_complete_pointer_per_step, tally
from .host_proc import CRASHFLOW_STEPS, Counter
from .procs import HostProc, kill9, read_history, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(60)]

LEASE = 1.0
POLL = 0.1


async def test_kill9_mid_step_then_another_host_resumes_from_last_commit(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    """Host A is SIGKILLed (whole process group) while s3's body runs; host B, started
    afterwards, takes the workflow over once A's lease expires and resumes it from the
    last commit: s1/s2 never run again, s3 runs again (its body had not committed)."""
    a = await HostProc.start(
        "host-a",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        extra=["--hold-step", "3"],
        registry=host_procs,
    )
    wid = await client.start_workflow("crashflow", {"n": 0})

    def s3_started() -> bool:
        return any(
            r["wf"] == wid and r["step"] == "s3" and r["event"] == "start"
            for r in read_history(history)
        )

    await wait_until(s3_started, 20, "host A starts s3")
    kill9(a)
    assert a.proc is not None and a.proc.returncode == -9

    before = await client.get_workflow(wid, data_type=Counter)
    assert before.status is WorkflowStatus.RUNNABLE
    assert before.data.n == 2, "s1 and s2 committed before the kill"

    b = await HostProc.start(
        "host-b",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        registry=host_procs,
    )
    inst = await client.wait_for_completion(wid, timeout=30, data_type=Counter)

    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.n == 5
    records = read_history(history)
    starts, ends = tally(records, "start", wid), tally(records, "end", wid)
    assert starts == {
        (wid, "s1"): 1,
        (wid, "s2"): 1,
        (wid, "s3"): 2,
        (wid, "s4"): 1,
        (wid, "s5"): 1,
    }, records
    assert ends == {(wid, step): 1 for step in CRASHFLOW_STEPS}, records
    hosts_by_step = {
        step: [r["host"] for r in records if r["step"] == step and r["event"] == "start"]
        for step in CRASHFLOW_STEPS
    }
    assert hosts_by_step["s1"] == hosts_by_step["s2"] == [a.pid]
    assert hosts_by_step["s3"] == [a.pid, b.pid]  # A's body died with A; B ran it again
    assert hosts_by_step["s4"] == hosts_by_step["s5"] == [b.pid]
    assert all(r["host"] == b.pid for r in records if r["event"] == "end" and r["step"] >= "s3")
    assert {r["attempt"] for r in records} == {1}, "a crash recovery is not a retry"
    await assert_one_complete_pointer_per_step(client, wid, CRASHFLOW_STEPS)
    record = await client.backend.persistence.get_workflow(wid)
    # Two claims: A's, then B's takeover of A's unreleased lease. B's takeover counted a
    # recovery, and B's first commit started the crash-loop count over.
    assert record.lease_token == 2, "exactly one takeover of A's lease"
    assert record.recoveries == 0, "a commit after the recovery resets the count"
    assert "running recovered workflow" in b.stderr(), b.stderr()
    assert b.alive(), b.stderr()
    assert "lease lost" not in b.stderr(), b.stderr()
