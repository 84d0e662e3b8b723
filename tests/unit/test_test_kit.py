"""Users unit-test workflows in milliseconds: in-memory store and a clock they move."""

import asyncio
from datetime import timedelta

from pydantic import BaseModel

from wfe import WorkflowBuilder, WorkflowHost, WorkflowStatus
from wfe_core.testing import FakeClock, memory_backend


class Reminder(BaseModel):
    sent: int = 0


async def send(ctx):
    ctx.data.sent += 1


async def test_an_hour_long_delay_under_a_fake_clock():
    clock = FakeClock()
    flow = (
        WorkflowBuilder("remind", data=Reminder)
        .start_with(send)
        .delay(timedelta(hours=1))
        .then(send)
        .build()
    )
    async with WorkflowHost(memory_backend(clock), poll_interval=0.05, log_events=False) as host:
        host.register(flow)
        wid = await host.start_workflow("remind", {})
        for _ in range(100):
            if (await host.get_workflow(wid)).data.sent == 1:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert (await host.get_workflow(wid)).status is WorkflowStatus.RUNNABLE
        clock.advance(timedelta(hours=1, seconds=1))
        done = await host.wait_for_completion(wid, timeout=5)
    assert done.status is WorkflowStatus.COMPLETE and done.data.sent == 2
