"""Graceful shutdown hands work over at once; steps start child workflows idempotently."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from wfe import RetryPolicy, ShuttingDown, WorkflowBuilder, WorkflowStatus


class Data(BaseModel):
    runs: int = 0
    child: str = ""
    n: int = 0


async def test_stop_cancels_past_timeout_and_releases_the_lease(make_host):
    entered = asyncio.Event()
    calls: list[str] = []

    async def long_step(ctx):
        calls.append("start")
        entered.set()
        if len(calls) == 1:
            await asyncio.sleep(60)  # the first host is stopped while this runs
        ctx.data.runs = len(calls)

    flow = WorkflowBuilder("long", data=Data).start_with(long_step).build()
    first = make_host(lease=60.0)  # a lease far longer than the test: release must be explicit
    first.register(flow)
    async with first:
        wid = await first.start_workflow("long", {})
        await asyncio.wait_for(entered.wait(), 10)
        await first.stop(timeout=0.2)
    with pytest.raises(ShuttingDown):
        await first.start_workflow("long", {})
    second = make_host(lease=60.0)
    second.register(flow)
    async with second:
        inst = await second.wait_for_completion(wid, 10)
    assert inst.status is WorkflowStatus.COMPLETE and inst.data.runs == 2


async def test_stop_lets_a_short_step_finish(make_host):
    entered = asyncio.Event()

    async def short_step(ctx):
        entered.set()
        await asyncio.sleep(0.3)
        ctx.data.n = 1

    host = make_host()
    host.register(WorkflowBuilder("short", data=Data).start_with(short_step).build())
    async with host:
        wid = await host.start_workflow("short", {})
        await asyncio.wait_for(entered.wait(), 10)
        await host.stop(timeout=10)
    inst = await host.backend.persistence.get_workflow(wid)
    assert inst.status is WorkflowStatus.COMPLETE


async def test_child_workflow_started_once_across_retries(make_host):
    async def child_body(ctx):
        ctx.data.n += 10

    async def parent_body(ctx):
        ctx.data.child = await ctx.start_workflow("child", {"n": 1})
        if ctx.attempt == 1:
            raise RuntimeError("fail after starting the child")

    child = WorkflowBuilder("child", data=Data).start_with(child_body).build()
    parent = (
        WorkflowBuilder("parent", data=Data)
        .start_with(parent_body)
        .default_retry(RetryPolicy(2))
        .build()
    )
    async with make_host() as host:
        host.register(child)
        host.register(parent)
        done = await host.wait_for_completion(await host.start_workflow("parent", {}), 30)
        child_done = await host.wait_for_completion(done.data.child, 30)
        children = await host.list_workflows(definition_id="child")
    assert done.status is WorkflowStatus.COMPLETE
    assert child_done.data.n == 11 and len(children) == 1
