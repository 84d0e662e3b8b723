"""Retention: purge(older_than) and the periodic cleanup task (one host at a time)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import BaseModel

from wfe import NotFound, WorkflowBuilder, WorkflowStatus


class Data(BaseModel):
    n: int = 0


async def add(ctx):
    ctx.data.n += 1


FLOW = WorkflowBuilder("retained", data=Data).start_with(add).build()
WAITING = WorkflowBuilder("waiting", data=Data).start_with(add).wait_for("go", "k").build()


async def test_purge_deletes_only_old_finished_workflows(make_host):
    async with make_host() as host:
        host.register(FLOW)
        host.register(WAITING)
        done = await host.wait_for_completion(await host.start_workflow("retained", {}), 10)
        waiting = await host.start_workflow("waiting", {})
        assert await host.purge(timedelta(hours=1)) == 0  # finished, but not old enough
        await asyncio.sleep(0.05)
        assert await host.purge(timedelta(0)) == 1
        with pytest.raises(NotFound):
            await host.get_workflow(done.id)
        assert (await host.get_workflow(waiting)).status is WorkflowStatus.RUNNABLE


async def test_the_cleanup_task_purges_periodically(make_host):
    host = make_host(cleanup_ttl=timedelta(0), cleanup_interval=0.1)
    host.register(FLOW)
    async with host:
        wid = await host.start_workflow("retained", {})
        await host.wait_for_completion(wid, 10)
        for _ in range(100):
            if not await host.list_workflows(definition_id="retained"):
                break
            await asyncio.sleep(0.05)
        assert await host.list_workflows(definition_id="retained") == []
