"""Sub-workflows: a child started with typed input, waited for without holding a worker,
its typed output mapped back; failures, retries and terminate propagate."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from wfe import (
    ErrorBehavior,
    RetryPolicy,
    WorkflowBuilder,
    WorkflowStatus,
)
from wfe_core.models import WorkflowQuery


class Parent(BaseModel):
    order: str = ""
    total: int = 0
    label: str = ""
    trace: list[str] = []


class Child(BaseModel):
    order: str
    quantity: int = 1
    total: int = 0


def note(label: str):
    async def body(ctx):
        ctx.data.trace = [*ctx.data.trace, label]

    body.__name__ = label
    return body


async def price(ctx):
    ctx.data.total = ctx.data.quantity * 10


def child_flow(body=price, **options):
    return WorkflowBuilder("pricing", data=Child, **options).start_with(body).build()


def parent_flow(retry: RetryPolicy | None = None, **sub_options):
    builder = (
        WorkflowBuilder("ordering", data=Parent)
        .start_with(note("before"))
        .sub_workflow(
            "pricing",
            input=lambda ctx: Child(order=ctx.data.order, quantity=3),
            output=output,
            **sub_options,
        )
    )
    if retry is not None:
        builder = builder.on_error(ErrorBehavior.retry(0.01, retry.max_attempts - 1))
    return builder.then(note("after")).build()


def output(ctx, child: Child) -> None:
    assert isinstance(child, Child)  # typed: this host registered the child
    ctx.data.total = child.total


async def test_child_runs_with_typed_input_and_its_output_comes_back(make_host):
    async with make_host() as host:
        host.register(child_flow())
        host.register(parent_flow())
        wid = await host.start_workflow("ordering", {"order": "A-1"})
        inst = await host.wait_for_completion(wid, 30)
        children = await host.list_workflows(definition_id="pricing")
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.total == 30 and inst.data.trace == ["before", "after"]
    assert len(children) == 1
    child = children[0]
    assert child.parent_id == wid and child.data.order == "A-1" and child.data.quantity == 3


async def test_waiting_parent_does_not_hold_a_worker(make_host):
    """With one workflow slot, the parent must release it for the child to run."""
    async with make_host(max_concurrent_workflows=1) as host:
        host.register(child_flow())
        host.register(parent_flow())
        wid = await host.start_workflow("ordering", {"order": "A-2"})
        inst = await host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.total == 30


async def test_failing_child_fails_the_parent_step(make_host):
    async def broken(ctx):
        raise RuntimeError("no price for you")

    async with make_host() as host:
        host.register(
            WorkflowBuilder("pricing", data=Child)
            .start_with(broken)
            .default_retry(RetryPolicy(max_attempts=1))
            .build()
        )
        host.register(parent_flow(retry=RetryPolicy(max_attempts=1)))
        wid = await host.start_workflow("ordering", {"order": "B"})
        inst = await host.wait_for_completion(wid, 60)
    assert inst.status is WorkflowStatus.FAILED
    assert "ChildWorkflowFailed" in inst.error and "no price for you" in inst.error


async def test_a_retried_sub_workflow_step_starts_a_fresh_child(make_host):
    calls = {"n": 0}

    async def flaky_price(ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first child fails")
        ctx.data.total = 7

    async with make_host() as host:
        host.register(
            WorkflowBuilder("pricing", data=Child)
            .start_with(flaky_price)
            .default_retry(RetryPolicy(max_attempts=1))
            .build()
        )
        host.register(parent_flow(retry=RetryPolicy(max_attempts=2)))
        wid = await host.start_workflow("ordering", {"order": "C"})
        inst = await host.wait_for_completion(wid, 60)
        children = await host.list_workflows(definition_id="pricing")
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.total == 7
    assert sorted(c.status.value for c in children) == ["COMPLETE", "FAILED"]


async def test_unknown_child_definition_is_a_clear_error(make_host):
    flow = (
        WorkflowBuilder("orphan", data=Parent)
        .sub_workflow("no-such-workflow", input=lambda ctx: {})
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        wid = await host.start_workflow("orphan", {})
        inst = await host.wait_for_completion(wid, 30)
        errors = await host.list_workflows(definition_id="no-such-workflow")
    assert inst.status is WorkflowStatus.FAILED
    assert "no-such-workflow" in inst.error and "not registered" in inst.error
    assert "1 attempt" in inst.error  # not retried: retrying cannot help
    assert errors == []


async def test_invalid_child_input_fails_at_once_naming_the_field(make_host):
    async with make_host() as host:
        host.register(child_flow())
        host.register(
            WorkflowBuilder("bad-input", data=Parent)
            .sub_workflow("pricing", input=lambda ctx: {"quantity": "many"})
            .build()
        )
        wid = await host.start_workflow("bad-input", {})
        inst = await host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.FAILED
    assert "quantity" in inst.error and "1 attempt" in inst.error


async def test_terminating_the_parent_terminates_the_child(make_host):
    release = asyncio.Event()

    async def wait_forever(ctx):
        ctx.data.total = 1

    child = (
        WorkflowBuilder("pricing", data=Child)
        .start_with(wait_forever)
        .wait_for("never", "k")
        .build()
    )
    async with make_host() as host:
        host.register(child)
        host.register(parent_flow())
        wid = await host.start_workflow("ordering", {"order": "T"})
        for _ in range(300):
            kids = await host.list_workflows(definition_id="pricing")
            if kids and kids[0].data.total == 1:
                break
            await asyncio.sleep(0.02)
        await host.terminate_workflow(wid)
        kids = await host.list_workflows(definition_id="pricing")
    release.set()
    assert [k.status for k in kids] == [WorkflowStatus.TERMINATED]


async def test_terminating_the_child_fails_the_waiting_parent_step(make_host):
    child = WorkflowBuilder("pricing", data=Child).wait_for("never", "k").build()
    async with make_host() as host:
        host.register(child)
        host.register(parent_flow(retry=RetryPolicy(max_attempts=1)))
        wid = await host.start_workflow("ordering", {"order": "X"})
        for _ in range(300):
            kids = await host.list_workflows(definition_id="pricing")
            if kids:
                break
            await asyncio.sleep(0.02)
        await host.terminate_workflow(kids[0].id)
        inst = await host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.FAILED
    assert "TERMINATED" in inst.error


async def test_child_defined_only_on_another_host(make_host, backend):
    """The parent's host does not know the child's model: output gets a dict."""
    seen: list[object] = []

    def keep(ctx, data):
        seen.append(data)
        ctx.data.total = data["total"]

    parent = (
        WorkflowBuilder("ordering", data=Parent)
        .sub_workflow("pricing", input=lambda ctx: {"order": "D", "quantity": 2}, output=keep)
        .build()
    )
    async with make_host() as child_host, make_host() as parent_host:
        child_host.register(child_flow())
        await asyncio.sleep(0.2)  # the child host records its definition at start
        parent_host.register(parent)
        wid = await parent_host.start_workflow("ordering", {})
        inst = await parent_host.wait_for_completion(wid, 30)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.total == 20 and isinstance(seen[0], dict)
    assert len(await backend.persistence.list_workflows(WorkflowQuery(limit=10))) == 2


async def test_a_sub_workflow_step_of_a_terminated_parent_starts_no_child(
    make_host, backend, monkeypatch
):
    """The parent is terminated just before its sub_workflow step starts the child:
    the store refuses the child, the step's end is fenced off, nothing is retried."""
    entered, release = asyncio.Event(), asyncio.Event()
    outcomes: list[str] = []
    create = backend.persistence.create_workflow

    async def held_create(new):
        if new.parent_id is None:
            return await create(new)
        entered.set()
        await release.wait()
        try:
            made = await create(new)
        except Exception as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("created")
        return made

    monkeypatch.setattr(backend.persistence, "create_workflow", held_create)
    async with make_host() as host:
        host.register(child_flow())
        host.register(parent_flow())
        wid = await host.start_workflow("ordering", {"order": "Z"})
        async with asyncio.timeout(30):
            await entered.wait()
        await host.terminate_workflow(wid)
        release.set()
        for _ in range(250):
            if outcomes:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # room for a retry or a re-claim, were there one
        inst = await host.get_workflow(wid)
        kids = await host.list_workflows(definition_id="pricing")
    assert outcomes == ["InvalidStateTransition"]
    assert inst.status is WorkflowStatus.TERMINATED and inst.data.trace == ["before"]
    assert kids == []
