"""Several host processes on one database, no faults: every workflow completes and
every step body runs exactly once (SPEC §4 guarantees 1 and 3; RELIABILITY.md R2(a)
and R9(a), invariants I1 and I4), then every host stops gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .checks import assert_one_complete_pointer_per_step, tally
from .host_proc import MULTIFLOW_STEPS
from .procs import HostProc, read_history, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(60)]

HOSTS = 3
WORKFLOWS = 300
"""Several hundred: more than one host's max_concurrent_workflows (100), so work spreads."""
LEASE = 30.0
"""The engine's default. No faults here, so no lease may run out: under heavy machine
load a host's renewals can wait seconds behind its own commits (see
test_lease_renewal.py), which this test is not about."""
POLL = 0.1


async def test_several_hosts_run_each_step_exactly_once(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    hosts = await asyncio.gather(
        *(
            HostProc.start(
                f"host-{i}",
                db=db_url,
                history=history,
                lease=LEASE,
                poll=POLL,
                log_dir=tmp_path,
                registry=host_procs,
            )
            for i in range(HOSTS)
        )
    )

    ids = [
        await client.start_workflow("multiflow", {"n": 0}, reference=f"wf-{i}")
        for i in range(WORKFLOWS)
    ]
    assert len(set(ids)) == WORKFLOWS

    async def all_finished() -> bool:
        unfinished = 0
        for status in (WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED):
            unfinished += len(
                await client.list_workflows(
                    status=status, definition_id="multiflow", limit=WORKFLOWS
                )
            )
        return unfinished == 0

    await wait_until(all_finished, 40, f"all {WORKFLOWS} workflows finish", interval=0.1)
    for wid in ids:
        inst = await client.get_workflow(wid)
        assert inst.status is WorkflowStatus.COMPLETE, (wid, inst.status, inst.error)
        assert inst.data == {"n": len(MULTIFLOW_STEPS)}, (wid, inst.data)
        await assert_one_complete_pointer_per_step(client, wid, MULTIFLOW_STEPS)

    records = read_history(history)
    expected = {(wid, step): 1 for wid in ids for step in MULTIFLOW_STEPS}
    starts, ends = tally(records, "start"), tally(records, "end")
    assert starts == expected, {k: v for k, v in starts.items() if v != 1}
    assert ends == expected, {k: v for k, v in ends.items() if v != 1}
    assert {r["attempt"] for r in records} == {1}
    pids = {h.pid for h in hosts}
    ran = {r["host"] for r in records}
    assert ran <= pids
    assert len(ran) >= 2, f"one host ran everything: {sorted(ran)}"

    for host in hosts:
        host.signal_group(signal.SIGTERM)
    for host in hosts:
        rc = await host.wait_exit(15)
        assert rc == 0, f"{host.name} exited {rc} on SIGTERM:\n{host.stderr()}"
    for host in hosts:
        log = host.stderr()
        assert "lease lost" not in log, f"{host.name} lost a lease without any fault:\n{log}"
        assert " ERROR " not in log and "Traceback" not in log, f"{host.name}:\n{log}"
