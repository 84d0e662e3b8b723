"""Events in (both orders, timeouts), suspend/resume/terminate, idempotent starts."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from wfe import (
    Backoff,
    InvalidStateTransition,
    NotFound,
    RetryPolicy,
    WorkflowBuilder,
    WorkflowStatus,
)


class Shipment(BaseModel):
    order_id: str = "o-1"
    tracking: str = ""
    steps: list[str] = []


def waiting_flow(timeout: float | None = None, retries: int = 3):
    async def before(ctx):
        ctx.data.steps = [*ctx.data.steps, "before"]

    async def after(ctx):
        ctx.data.steps = [*ctx.data.steps, "after"]

    return (
        WorkflowBuilder("ship", data=Shipment)
        .start_with(before)
        .wait_for(
            "shipped",
            lambda ctx: ctx.data.order_id,
            output=lambda ctx, data: setattr(ctx.data, "tracking", data["tracking"]),
            timeout=timeout,
        )
        .then(after)
        .default_retry(RetryPolicy(retries))
        .build()
    )


async def wait_status(host, wid, status, tries=300):
    for _ in range(tries):
        inst = await host.get_workflow(wid)
        if inst.status is status:
            return inst
        await asyncio.sleep(0.02)
    raise AssertionError(f"{wid} never reached {status}: {inst.status}")


async def wait_pointer(host, wid, step_name, status, tries=300):
    for _ in range(tries):
        pointers = await host.backend.persistence.get_pointers(wid)
        if any(p.step_name == step_name and p.status.value == status for p in pointers):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{step_name} of {wid} never reached {status}")


async def test_event_published_after_the_workflow_reaches_its_wait(make_host):
    async with make_host() as host:
        host.register(waiting_flow())
        wid = await host.start_workflow("ship", {"order_id": "o-7"})
        await wait_pointer(host, wid, "wait_for_shipped", "WAITING")
        await host.publish_event("shipped", "o-other", {"tracking": "wrong"})
        await host.publish_event("shipped", "o-7", {"tracking": "TRK7"})
        inst = await host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.COMPLETE
    assert inst.data.tracking == "TRK7" and inst.data.steps == ["before", "after"]


async def test_event_published_before_the_workflow_reaches_its_wait(make_host):
    host = make_host()
    host.register(waiting_flow())
    wid = await host.start_workflow("ship", {"order_id": "o-8"})  # host not started yet
    await host.publish_event("shipped", "o-8", {"tracking": "EARLY"})
    async with host:
        inst = await host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.COMPLETE and inst.data.tracking == "EARLY"


async def test_events_from_before_the_workflow_started_do_not_match(make_host):
    async with make_host() as host:
        host.register(waiting_flow(timeout=0.3, retries=1))
        await host.publish_event("shipped", "o-9", {"tracking": "STALE"})
        await asyncio.sleep(0.01)
        wid = await host.start_workflow("ship", {"order_id": "o-9"})
        inst = await host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.FAILED
    assert "StepTimeout" in inst.error and inst.data.tracking == ""


async def test_a_step_failing_after_its_event_consumes_it_and_waits_afresh(make_host):
    """The event that woke a failing step is used up and its subscription dropped: the
    retry waits for a new event instead of spinning on the old one or stalling."""
    tries: list[str] = []

    def picky(ctx, data):
        tries.append(data["tracking"])
        if data["tracking"] == "BAD":
            raise ValueError("unreadable tracking number")
        ctx.data.tracking = data["tracking"]

    flow = (
        WorkflowBuilder("picky", data=Shipment)
        .wait_for("shipped", "o-5", output=picky)
        .default_retry(RetryPolicy(3, backoff=Backoff.fixed(0.01)))
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        wid = await host.start_workflow("picky", {})
        await host.publish_event("shipped", "o-5", {"tracking": "BAD"})
        for _ in range(300):
            pointers = await host.backend.persistence.get_pointers(wid)
            if pointers and pointers[0].attempt == 2 and pointers[0].status.value == "WAITING":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"the retry never waited again: {pointers}")
        await host.publish_event("shipped", "o-5", {"tracking": "GOOD"})
        inst = await host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert tries == ["BAD", "GOOD"] and inst.data.tracking == "GOOD"


async def test_one_event_is_delivered_once_per_workflow_and_to_every_waiter(make_host):
    async with make_host() as host:
        host.register(waiting_flow())
        a = await host.start_workflow("ship", {"order_id": "shared"})
        b = await host.start_workflow("ship", {"order_id": "shared"})
        await host.publish_event("shipped", "shared", {"tracking": "T"})
        done = [await host.wait_for_completion(w, 30) for w in (a, b)]
    assert [d.data.tracking for d in done] == ["T", "T"]


async def test_suspend_resume_terminate(make_host):
    async with make_host() as host:
        host.register(waiting_flow())
        wid = await host.start_workflow("ship", {"order_id": "o-s"})
        await wait_pointer(host, wid, "wait_for_shipped", "WAITING")
        await host.suspend_workflow(wid)
        assert (await host.get_workflow(wid)).status is WorkflowStatus.SUSPENDED
        with pytest.raises(InvalidStateTransition, match="suspend"):
            await host.suspend_workflow(wid)
        await host.publish_event("shipped", "o-s", {"tracking": "S"})
        await asyncio.sleep(0.3)  # suspended: the event waits, nothing runs
        assert (await host.get_workflow(wid)).data.steps == ["before"]
        await host.resume_workflow(wid)
        inst = await host.wait_for_completion(wid, 30)
        assert inst.status is WorkflowStatus.COMPLETE and inst.data.tracking == "S"

        other = await host.start_workflow("ship", {"order_id": "o-t"})
        await wait_pointer(host, other, "wait_for_shipped", "WAITING")
        await host.terminate_workflow(other)
        terminated = await host.wait_for_completion(other, 5)
        assert terminated.status is WorkflowStatus.TERMINATED
        assert terminated.complete_time is not None
        with pytest.raises(InvalidStateTransition, match="resume"):
            await host.resume_workflow(other)
        with pytest.raises(NotFound):
            await host.terminate_workflow("no-such-workflow")


async def test_terminate_fences_a_running_step(make_host):
    started, finish = asyncio.Event(), asyncio.Event()

    async def long_step(ctx):
        started.set()
        await finish.wait()
        ctx.data.steps = ["long"]

    flow = WorkflowBuilder("long", data=Shipment).start_with(long_step).build()
    async with make_host() as host:
        host.register(flow)
        wid = await host.start_workflow("long", {})
        await asyncio.wait_for(started.wait(), 10)
        await host.terminate_workflow(wid)
        finish.set()
        await asyncio.sleep(0.3)
        inst = await host.get_workflow(wid)
    assert inst.status is WorkflowStatus.TERMINATED and inst.data.steps == []


async def test_idempotent_start_under_concurrent_calls(make_host):
    async with make_host() as host:
        host.register(waiting_flow())
        ids = await asyncio.gather(
            *[
                host.start_workflow("ship", {"order_id": "idem"}, idempotency_key="key-1")
                for _ in range(16)
            ]
        )
        other = await host.start_workflow("ship", {"order_id": "idem"}, idempotency_key="key-2")
        listed = await host.list_workflows(definition_id="ship")
    assert len(set(ids)) == 1 and other != ids[0]
    assert sorted(i.id for i in listed) == sorted({ids[0], other})
