"""A poison step that kills its host process every time it runs (RELIABILITY R11a):
after max_recovery_attempts the workflow is FAILED with the reason, the hosts stop
dying, and healthy workflows all complete."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .host_proc import MULTIFLOW_STEPS
from .procs import HostProc

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(90)]

LEASE = 1.0
POLL = 0.1
MAX_RECOVERIES = 2
HEALTHY = 10


async def test_a_poison_workflow_fails_instead_of_crashing_hosts_forever(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    async def spawn() -> HostProc:
        return await HostProc.start(
            f"host-{time.monotonic_ns()}",
            db=db_url,
            history=history,
            lease=LEASE,
            poll=POLL,
            log_dir=tmp_path,
            registry=host_procs,
            extra=["--max-recoveries", str(MAX_RECOVERIES)],
        )

    host = await spawn()
    poison = await client.start_workflow("poisonflow", {"n": 0})
    healthy = [await client.start_workflow("multiflow", {"n": 0}) for _ in range(HEALTHY)]
    deaths = 0
    deadline = time.monotonic() + 60
    while (await client.get_workflow(poison)).status is WorkflowStatus.RUNNABLE:
        assert time.monotonic() < deadline, f"still RUNNABLE after {deaths} host deaths"
        if not host.alive():
            deaths += 1
            assert deaths <= MAX_RECOVERIES + 1, "the poison workflow kept killing hosts"
            host = await spawn()
        await asyncio.sleep(0.05)

    failed = await client.get_workflow(poison)
    assert failed.status is WorkflowStatus.FAILED
    assert f"exceeded {MAX_RECOVERIES} recovery attempts" in failed.error
    assert "'poison'" in failed.error
    assert deaths == MAX_RECOVERIES + 1
    for wid in healthy:
        done = await client.wait_for_completion(wid, 30)
        assert done.status is WorkflowStatus.COMPLETE
        assert done.data == {"n": len(MULTIFLOW_STEPS)}
    assert host.alive(), "the host must survive once the poison workflow is failed"
