"""SIGTERM a real host process in the middle of a long step: it exits cleanly within its
stop timeout, and another host process finishes the workflow at once instead of after
the lease (issue 4: graceful shutdown). A second SIGTERM cancels the step at once.

Leases here are 30 s and every wait is at most a third of that: a workflow finished in
time was handed over by the stopping host's release, never by its lease running out.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .checks import assert_one_complete_pointer_per_step, tally
from .host_proc import CRASHFLOW_STEPS, Counter
from .procs import READY_TIMEOUT, HostProc, read_history, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(90)]

LEASE = 30.0
POLL = 0.1
WITHIN = LEASE / 3
"""Seconds a handover (or a forced stop) may take: far less than the lease."""


async def start_signal_host(
    name: str,
    *,
    db: str,
    history: Path,
    stop_timeout: float,
    log_dir: Path,
    registry: list[HostProc],
) -> HostProc:
    """A ``tests.crash.signal_host_proc`` process (HostProc.start runs host_proc only)."""
    args = [
        sys.executable,
        "-m",
        "tests.crash.signal_host_proc",
        *("--db", db, "--history", str(history)),
        *("--lease", str(LEASE), "--poll", str(POLL)),
        *("--stop-timeout", str(stop_timeout), "--hold-step", "3"),
    ]
    host = HostProc(name, args, log_dir / f"{name}.stderr.log")
    registry.append(host)
    host._spawn()
    await host._await_ready(READY_TIMEOUT)
    return host


async def start_holding_workflow(client: WorkflowClient, history: Path) -> str:
    """Start a crashflow and wait until its s3 (held forever by host A) has started."""
    wid = await client.start_workflow("crashflow", {"n": 0})

    def s3_started() -> bool:
        return any(
            r["wf"] == wid and r["step"] == "s3" and r["event"] == "start"
            for r in read_history(history)
        )

    await wait_until(s3_started, 20, "host A starts s3")
    return wid


async def assert_taken_over_once(
    client: WorkflowClient, history: Path, wid: str, a: HostProc, b: HostProc
) -> None:
    """B finished the workflow: s3 ran twice (A's was cancelled, not failed), the rest
    once; one release and one claim in between, no crash recovery."""
    inst = await client.wait_for_completion(wid, timeout=WITHIN, data_type=Counter)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.n == len(CRASHFLOW_STEPS)
    records = read_history(history)
    starts = tally(records, "start", wid)
    assert starts == {(wid, s): 2 if s == "s3" else 1 for s in CRASHFLOW_STEPS}, records
    assert tally(records, "end", wid) == {(wid, s): 1 for s in CRASHFLOW_STEPS}, records
    s3_hosts = [r["host"] for r in records if r["step"] == "s3" and r["event"] == "start"]
    assert s3_hosts == [a.pid, b.pid]
    assert {r["attempt"] for r in records} == {1}, "a cancelled step is not a failed attempt"
    await assert_one_complete_pointer_per_step(client, wid, CRASHFLOW_STEPS)
    record = await client.backend.persistence.get_workflow(wid)
    assert record.lease_token == 2, "A's claim, then B's"
    assert record.recoveries == 0, "A released the workflow: B's claim is no recovery"
    assert "running recovered workflow" not in b.stderr(), b.stderr()


async def test_sigterm_stops_within_the_timeout_and_another_host_resumes_at_once(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    stop_timeout = 1.0
    a = await start_signal_host(
        "host-a",
        db=db_url,
        history=history,
        stop_timeout=stop_timeout,
        log_dir=tmp_path,
        registry=host_procs,
    )
    wid = await start_holding_workflow(client, history)
    b = await HostProc.start(  # now: it must not claim the workflow before A does
        "host-b",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        registry=host_procs,
    )

    sent = time.monotonic()
    a.signal_group(signal.SIGTERM)
    assert await a.wait_exit(stop_timeout + WITHIN) == 0, a.stderr()
    await assert_taken_over_once(client, history, wid, a, b)
    assert time.monotonic() - sent < LEASE, "handed over by the release, not by the lease"

    log = a.stderr()
    assert "SIGTERM: stopping host" in log, log
    assert "cancelled 1 workflow runs still in flight" in log, log
    assert "process exiting: host" in log and "is stopped" in log, log
    assert "Traceback" not in log, log


async def test_a_second_sigterm_cancels_running_steps_at_once(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    a = await start_signal_host(
        "host-a",
        db=db_url,
        history=history,
        stop_timeout=3600,  # only the second signal can end this stop in time
        log_dir=tmp_path,
        registry=host_procs,
    )
    wid = await start_holding_workflow(client, history)
    b = await HostProc.start(  # now: it must not claim the workflow before A does
        "host-b",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        registry=host_procs,
    )

    a.signal_group(signal.SIGTERM)
    await wait_until(lambda: "SIGTERM: stopping host" in a.stderr(), WITHIN, "A begins to stop")
    assert a.alive(), a.stderr()
    a.signal_group(signal.SIGTERM)
    assert await a.wait_exit(WITHIN) == 0, a.stderr()
    await assert_taken_over_once(client, history, wid, a, b)

    log = a.stderr()
    assert "SIGTERM again: cancelling the steps still running" in log, log
    assert "Traceback" not in log, log
