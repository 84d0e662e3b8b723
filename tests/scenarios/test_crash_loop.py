"""Crash-loop protection: a workflow whose hosts keep dying while running it is FAILED
with the reason after a limit, instead of crashing hosts forever (RELIABILITY R11a)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from wfe import WorkflowBuilder, WorkflowStatus


class Data(BaseModel):
    n: int = 0


async def add(ctx):
    ctx.data.n += 1


FLOW = WorkflowBuilder("loop", data=Data).start_with(add, name="poison").then(add).build()


async def die_holding_the_lease(backend, times: int) -> None:
    """Claim like a host that dies at once: the lease is never renewed or released."""
    for _ in range(times):
        claims = await backend.queue.claim("doomed-host", 10, 0.05, [("loop", 1)])
        assert claims, "the workflow should be claimable once the last lease expired"
        await asyncio.sleep(0.12)


async def test_a_workflow_past_the_recovery_limit_fails_with_the_reason(make_host, backend):
    host = make_host(max_recovery_attempts=2)
    host.register(FLOW)
    wid = await host.start_workflow("loop", {})  # not started: only the doomed host claims
    await die_holding_the_lease(backend, 3)  # 3 dead hosts; the third death counts at
    assert (await backend.persistence.get_workflow(wid)).recoveries == 2  # the next claim
    async with host:
        inst = await host.wait_for_completion(wid, 10)
    assert inst.status is WorkflowStatus.FAILED
    assert "exceeded 2 recovery attempts" in inst.error and "'poison'" in inst.error
    assert inst.data.n == 0


async def test_progress_resets_the_count(make_host, backend):
    host = make_host(max_recovery_attempts=2)
    host.register(FLOW)
    wid = await host.start_workflow("loop", {})
    await die_holding_the_lease(backend, 2)  # 2 dead hosts: still within the limit
    async with host:
        inst = await host.wait_for_completion(wid, 10)
    assert inst.status is WorkflowStatus.COMPLETE and inst.data.n == 2
    assert (await backend.persistence.get_workflow(wid)).recoveries == 0
