"""A paused owner cannot commit over the host that took its workflow over
(SPEC §4 guarantee 3; RELIABILITY.md R3, invariants I1 and I3)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .checks import assert_one_complete_pointer_per_step, tally
from .host_proc import CRASHFLOW_STEPS, Counter
from .procs import HostProc, pause_quiescent, read_history, resume, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(60)]

LEASE = 1.0
POLL = 0.1
SLOW_SECONDS = 2.0
SETTLE_SECONDS = 2.0


async def snapshot(client: WorkflowClient, workflow_id: str) -> tuple[object, object]:
    """The stored workflow row and its pointers, to prove nothing changed."""
    persistence = client.backend.persistence
    record = await persistence.get_workflow(workflow_id)
    pointers = await persistence.get_pointers(workflow_id)
    return record.model_dump(), [p.model_dump() for p in pointers]


async def take_over(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
    wid: str,
    token_a: int,
) -> tuple[HostProc, tuple[object, object]]:
    """Host B takes the workflow over and completes it with a newer lease token;
    returns B and the stored state it left."""
    b = await HostProc.start(
        "host-b",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        registry=host_procs,
    )
    done = await client.wait_for_completion(wid, timeout=30, data_type=Counter)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert done.data.n == 5
    before = await snapshot(client, wid)
    assert before[0]["lease_token"] > token_a, "B's claim took a newer token"
    return b, before


async def assert_keeps_serving(
    a: HostProc, b: HostProc, client: WorkflowClient, history: Path
) -> None:
    """After losing a lease A still works: with B stopped, A runs a new workflow."""
    b.signal_group(signal.SIGTERM)
    assert await b.wait_exit(15) == 0, b.stderr()
    wid = await client.start_workflow("multiflow", {"n": 0})
    inst = await client.wait_for_completion(wid, timeout=20)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert {r["host"] for r in read_history(history) if r["wf"] == wid} == {a.pid}
    assert a.alive(), a.stderr()


async def test_paused_owner_is_fenced_off_after_takeover(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    """SIGSTOP A in the middle of s3 for longer than its lease; B takes the workflow
    over and finishes it; SIGCONT A. A wakes up with a stale token (in practice its
    lease renewal, overdue, notices first and abandons the run; the commit path is
    covered by the next test) and must not change anything B committed."""
    inflight = tmp_path / "host-a.inflight"
    a = await HostProc.start(
        "host-a",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        extra=[
            "--slow-step",
            "3",
            "--slow-seconds",
            str(SLOW_SECONDS),
            "--inflight",
            str(inflight),
        ],
        registry=host_procs,
    )
    wid = await client.start_workflow("crashflow", {"n": 0})

    def a_in_s3() -> bool:
        return any(
            r["wf"] == wid and r["step"] == "s3" and r["event"] == "start"
            for r in read_history(history)
        )

    await wait_until(a_in_s3, 20, "host A starts s3")
    await pause_quiescent(a, inflight)
    assert not any(r["step"] == "s3" and r["event"] == "end" for r in read_history(history)), (
        "A was paused after finishing s3's body: the test would not exercise fencing"
    )
    token_a = (await client.backend.persistence.get_workflow(wid)).lease_token

    # A's lease runs out while it is frozen; B claims the workflow and finishes it.
    async def lease_expired() -> bool:
        record = await client.backend.persistence.get_workflow(wid)
        return (
            record.lease_expires_at is not None
            and record.lease_expires_at < client.backend.persistence.now_ms()
        )

    await wait_until(lease_expired, 10, "A's lease expires")
    b, before = await take_over(db_url, history, tmp_path, host_procs, client, wid, token_a)

    # A wakes up in the middle of s3 with a stale token: it must be fenced off.
    await resume(a)
    fenced = f"lease lost, abandoning workflow {wid}"
    await wait_until(lambda: fenced in a.stderr(), 15, f"A logs {fenced!r}")
    await asyncio.sleep(SETTLE_SECONDS)  # room for any late write by A to land
    after = await snapshot(client, wid)
    assert after == before, "the fenced-off host changed the workflow after B finished it"

    final = await client.get_workflow(wid, data_type=Counter)
    assert final.status is WorkflowStatus.COMPLETE and final.data.n == 5
    await assert_one_complete_pointer_per_step(client, wid, CRASHFLOW_STEPS)

    records = read_history(history)
    starts = tally(records, "start", wid)
    assert starts == {
        (wid, "s1"): 1,
        (wid, "s2"): 1,
        (wid, "s3"): 2,
        (wid, "s4"): 1,
        (wid, "s5"): 1,
    }, records
    s3_hosts = [r["host"] for r in records if r["step"] == "s3" and r["event"] == "start"]
    assert s3_hosts == [a.pid, b.pid]
    assert all(r["host"] == b.pid for r in records if r["step"] in ("s4", "s5"))
    assert a.alive(), f"a lost lease must not crash the host:\n{a.stderr()}"
    await assert_keeps_serving(a, b, client, history)


async def test_owner_frozen_past_its_lease_cannot_commit_over_new_owner(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    """The commit path of fencing: A's s3 body freezes A's whole event loop (no lease
    renewal can run, as in a long GC pause) until B has finished the workflow; then A's
    body returns and A commits s3 with its stale token. The store must refuse it."""
    release = tmp_path / "release-a"
    a = await HostProc.start(
        "host-a",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        extra=["--block-step", "3", "--release-file", str(release)],
        registry=host_procs,
    )
    wid = await client.start_workflow("crashflow", {"n": 0})
    await wait_until(
        lambda: "blocking the event loop" in a.stderr(), 20, "host A freezes its event loop in s3"
    )
    token_a = (await client.backend.persistence.get_workflow(wid)).lease_token

    b, before = await take_over(db_url, history, tmp_path, host_procs, client, wid, token_a)

    release.touch()
    await wait_until(lambda: "event loop released" in a.stderr(), 10, "A's loop runs again")
    await wait_until(
        lambda: "commit fenced off" in a.stderr(), 10, "the store refuses A's commit of s3"
    )
    fenced = f"lease lost, abandoning workflow {wid}"
    await wait_until(lambda: fenced in a.stderr(), 10, f"A logs {fenced!r}")
    await asyncio.sleep(SETTLE_SECONDS)  # room for any other late write by A to land

    after = await snapshot(client, wid)
    assert after == before, "the fenced-off host changed the workflow after B finished it"
    await assert_one_complete_pointer_per_step(client, wid, CRASHFLOW_STEPS)
    records = read_history(history)
    assert tally(records, "start", wid) == {
        (wid, "s1"): 1,
        (wid, "s2"): 1,
        (wid, "s3"): 2,
        (wid, "s4"): 1,
        (wid, "s5"): 1,
    }, records
    # Both s3 bodies ran to their end (at least once is allowed); only B's committed.
    assert [r["host"] for r in records if r["step"] == "s3" and r["event"] == "end"] == [
        b.pid,
        a.pid,
    ]
    assert a.alive(), f"a lost lease must not crash the host:\n{a.stderr()}"
    await assert_keeps_serving(a, b, client, history)
