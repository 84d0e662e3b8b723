"""The SPEC quickstart, chains, inline steps, data mappings and lifecycle events."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from wfe import (
    ErrorBehavior,
    ExecutionResult,
    StepBody,
    StepContext,
    WorkflowBuilder,
    WorkflowStatus,
)
from wfe import events as ev


class Order(BaseModel):
    n: int = 0
    log: list[str] = []


class AddOne(StepBody):
    async def run(self, ctx: StepContext[Order]) -> ExecutionResult:
        ctx.data.n += 1
        return ExecutionResult.next()


def quickstart_flow():
    return (
        WorkflowBuilder("orders", version=1, data=Order)
        .start_with(AddOne, name="first")
        .then(AddOne, name="second")
        .build()
    )


async def test_quickstart(make_host):
    async with make_host() as host:
        host.register(quickstart_flow())
        wid = await host.start_workflow("orders", Order(n=1))
        inst = await host.wait_for_completion(wid, timeout=30)
    assert inst.status is WorkflowStatus.COMPLETE
    assert inst.data.n == 3
    assert isinstance(wid, str) and inst.id == wid
    assert inst.complete_time is not None and inst.complete_time >= inst.create_time


async def test_the_instance_a_waiter_gets_is_the_stored_one(make_host):
    async def fail(ctx):
        raise RuntimeError("no stock")

    failing = (
        WorkflowBuilder("failing", version=1, data=Order)
        .start_with(AddOne)
        .then(fail, name="fail")
        .on_error(ErrorBehavior.terminate())
        .build()
    )
    async with make_host() as host:
        host.register(quickstart_flow())
        host.register(failing)
        many = [await host.start_workflow("orders", Order(n=i)) for i in range(5)]
        bad = await host.start_workflow("failing", Order(n=7))
        waited = await asyncio.gather(*(host.wait_for_completion(w, 30) for w in [*many, bad]))
        stored = [await host.get_workflow(w) for w in [*many, bad]]
    # The host hands its waiters the record its last commit wrote, without reading it
    # back: every field must be what the store holds.
    assert [w.model_dump() for w in waited] == [s.model_dump() for s in stored]
    assert [w.data.n for w in waited] == [2, 3, 4, 5, 6, 8]
    assert waited[-1].status is WorkflowStatus.TERMINATED and "no stock" in (waited[-1].error or "")


async def test_function_steps_then_fn_and_mappings(make_host):
    class Multiply(StepBody):
        factor: int = 1
        product: int = 0

        async def run(self, ctx):
            self.product = ctx.data.n * self.factor
            return ExecutionResult.next()

    async def record(ctx):
        ctx.data.log.append(f"fn:{ctx.step_name}:{ctx.attempt}")

    def sync_inline(ctx):
        ctx.data.log.append("inline")

    flow = (
        WorkflowBuilder("mapped", data=Order)
        .start_with(record, name="rec")
        .then(Multiply)
        .input("factor", lambda ctx: 7)
        .output(lambda ctx, value: setattr(ctx.data, "n", value), "product")
        .then_fn(sync_inline)
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        wid = await host.start_workflow("mapped", {"n": 6})
        inst = await host.wait_for_completion(wid, timeout=30)
    assert inst.status is WorkflowStatus.COMPLETE
    assert inst.data.n == 42
    assert inst.data.log == ["fn:rec:1", "inline"]


async def test_lifecycle_events_in_order(make_host):
    seen: list[object] = []

    async def async_subscriber(event):
        seen.append(event)

    def broken_subscriber(event):
        raise RuntimeError("subscriber bug")

    host = make_host()
    host.subscribe(broken_subscriber)  # must not break anything
    host.subscribe(async_subscriber)
    async with host:
        host.register(quickstart_flow())
        wid = await host.start_workflow("orders", Order())
        await host.wait_for_completion(wid, timeout=30)
        for _ in range(100):
            if any(isinstance(e, ev.WorkflowCompleted) for e in seen):
                break
            await asyncio.sleep(0.02)
    kinds = [(type(e).__name__, getattr(e, "step_name", None)) for e in seen]
    assert kinds == [
        ("WorkflowStarted", None),
        ("StepStarted", "first"),
        ("StepCompleted", "first"),
        ("StepStarted", "second"),
        ("StepCompleted", "second"),
        ("WorkflowCompleted", None),
    ]
    assert all(e.workflow_id == wid and e.definition_id == "orders" for e in seen)


async def test_list_and_get(make_host):
    async with make_host() as host:
        host.register(quickstart_flow())
        ids = [await host.start_workflow("orders", Order(n=i), reference=f"r{i}") for i in range(3)]
        for wid in ids:
            await host.wait_for_completion(wid, timeout=30)
        listed = await host.list_workflows(status=WorkflowStatus.COMPLETE, definition_id="orders")
        assert isinstance(listed, list)
        assert {i.id for i in listed} == set(ids)
        one = await host.get_workflow(ids[1])
        assert one.reference == "r1" and one.data.n == 3
        assert await host.list_workflows(status=WorkflowStatus.FAILED) == []
        assert len(await host.list_workflows(limit=2)) == 2
