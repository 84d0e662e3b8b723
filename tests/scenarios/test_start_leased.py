"""A host runs the workflows it starts itself at once, leased to it at their creation
(no claim, no load), up to its capacity; any other start waits for a claim."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from wfe import StepContext, WorkflowBuilder, WorkflowHost, WorkflowStatus
from wfe_core.models import Claim, NewWorkflow

LONG_LEASE = 30.0  # longer than any test: a workflow that moves on was not left to expire


class Count(BaseModel):
    n: int = 0


async def add_one(ctx: StepContext[Count]) -> None:
    ctx.data.n += 1


def flow(version: int = 1, body: Any = add_one) -> Any:
    return WorkflowBuilder("counted", version=version, data=Count).start_with(body).build()


def spy_on_claims(host: WorkflowHost) -> list[str]:
    """The ids of every workflow ``host`` claims from now on."""
    claimed: list[str] = []
    queue = host.backend.queue
    claim = queue.claim

    async def recording(*args: Any, **kwargs: Any) -> list[Claim]:
        claims = await claim(*args, **kwargs)
        claimed.extend(c.workflow_id for c in claims)
        return claims

    queue.claim = recording  # type: ignore[method-assign]
    return claimed


async def test_a_host_runs_what_it_starts_without_claiming_it(make_host):
    host = make_host(lease=LONG_LEASE)
    host.register(flow())
    await host.start()
    claimed = spy_on_claims(host)

    ids = [await host.start_workflow("counted", {"n": i}) for i in range(5)]
    done = [await host.wait_for_completion(wid, timeout=30) for wid in ids]

    assert [(i.status, i.data.n) for i in done] == [
        (WorkflowStatus.COMPLETE, n + 1) for n in range(5)
    ]
    assert claimed == []
    for wid in ids:
        record = await host.backend.persistence.get_workflow(wid)
        assert (record.lease_owner, record.lease_token, record.recoveries) == (None, 1, 0)


async def test_starts_past_the_capacity_wait_for_a_claim(make_host):
    gate = asyncio.Event()
    running = 0
    most = 0
    runs: list[str] = []

    async def held(ctx: StepContext[Count]) -> None:
        nonlocal running, most
        runs.append(ctx.workflow_id)
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1
        ctx.data.n += 1

    host = make_host(lease=LONG_LEASE, max_concurrent_workflows=2)
    host.register(flow(body=held))
    await host.start()
    claimed = spy_on_claims(host)

    ids = [await host.start_workflow("counted", {}) for _ in range(6)]
    await asyncio.sleep(0.3)  # polls come and go: still no room for a third
    assert running == 2
    gate.set()
    done = await asyncio.gather(*(host.wait_for_completion(wid, timeout=30) for wid in ids))

    assert all(i.status is WorkflowStatus.COMPLETE and i.data.n == 1 for i in done)
    assert most == 2
    assert sorted(runs) == sorted(ids)  # each ran once
    # Those past the capacity were stored for a claim (an idle poll may claim one of
    # the first two too, when it holds the slots as that one is started).
    assert len(claimed) >= 4 and sorted(set(claimed)) == sorted(claimed)


async def test_a_start_of_a_definition_the_host_does_not_serve_goes_to_the_queue(make_host):
    starter = make_host(lease=LONG_LEASE)
    starter.register(flow(version=1))
    runner = make_host(lease=LONG_LEASE)
    runner.register(flow(version=2))
    await starter.start()
    await runner.start()
    by_runner = spy_on_claims(runner)

    wid = await starter.start_workflow("counted", {}, version=2)
    done = await starter.wait_for_completion(wid, timeout=30)

    assert done.status is WorkflowStatus.COMPLETE
    assert by_runner == [wid]


async def test_a_start_whose_host_began_to_stop_meanwhile_is_handed_on(make_host):
    # The window between reserving a slot and the row landing: the stop wins, and the
    # workflow is released at once rather than left leased until its lease expires.
    stopping = make_host(lease=LONG_LEASE)
    stopping.register(flow())
    await stopping.start()
    worker = stopping._worker
    lease = worker.reserve("counted", 1)
    assert lease is not None
    stopping.request_stop(timeout=5)
    record, created = await stopping.backend.persistence.create_workflow(
        NewWorkflow(id="handed-on", definition_id="counted", version=1, data="{}", lease=lease)
    )
    assert created and record.lease_owner == lease.owner

    assert not await worker.adopt(record)

    other = make_host(lease=LONG_LEASE)
    other.register(flow())
    await other.start()
    done = await other.wait_for_completion("handed-on", timeout=10)
    assert done.status is WorkflowStatus.COMPLETE and done.data.n == 1
    assert worker.reserve("counted", 1) is None  # a stopping host takes no more
