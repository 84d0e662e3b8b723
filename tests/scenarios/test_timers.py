"""Durable timers: delays, sleeps and scheduled_at are stored times that survive restarts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from wfe import ExecutionResult, StepBody, WorkflowBuilder, WorkflowStatus


class Data(BaseModel):
    steps: list[str] = []
    wakes: int = 0


async def mark_before(ctx):
    ctx.data.steps = [*ctx.data.steps, "before"]


async def mark_after(ctx):
    ctx.data.steps = [*ctx.data.steps, "after"]


def delayed_flow(seconds: float):
    return (
        WorkflowBuilder("delayed", data=Data)
        .start_with(mark_before)
        .delay(timedelta(seconds=seconds))
        .then(mark_after)
        .build()
    )


async def test_delay_fires_after_the_host_was_stopped_and_started_again(make_host):
    first = make_host()
    first.register(delayed_flow(1.0))
    async with first:
        wid = await first.start_workflow("delayed", {})
        # Stop once the delay is stored (its pointer has a wake-up time), not before.
        for _ in range(200):
            pointers = await first.backend.persistence.get_pointers(wid)
            sleeping = [p for p in pointers if p.step_name == "delay" and p.sleep_until]
            if sleeping:
                break
            await asyncio.sleep(0.02)
    stopped = await first.get_workflow(wid)
    assert stopped.status is WorkflowStatus.RUNNABLE and stopped.data.steps == ["before"]
    assert sleeping, "the delay step never stored its wake-up time"  # a stored time, not a sleep

    second = make_host()
    second.register(delayed_flow(1.0))
    async with second:
        inst = await second.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.COMPLETE and inst.data.steps == ["before", "after"]
    after = await second.backend.persistence.get_pointers(wid)
    assert [p.step_name for p in after] == ["mark_before", "delay", "mark_after"]  # no re-run


async def test_sleep_result_and_scheduled_at(make_host):
    class Poller(StepBody):
        async def run(self, ctx):
            ctx.data.wakes += 1
            if (ctx.persistence_data or 0) < 2:
                return ExecutionResult.sleep(0.05, (ctx.persistence_data or 0) + 1)
            return ExecutionResult.next()

    at = datetime.now(tz=UTC) + timedelta(seconds=0.5)
    flow = (
        WorkflowBuilder("timers", data=Data)
        .step("poll", Poller)
        .step("later", mark_after, scheduled_at=at)
        .step("delayed", mark_before, delay=0.2)
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("timers", {}), 30)
        pointers = {p.step_name: p for p in await host.backend.persistence.get_pointers(inst.id)}
    assert inst.status is WorkflowStatus.COMPLETE
    assert inst.data.wakes == 3
    assert pointers["later"].start_time >= int(at.timestamp() * 1000) - 50
