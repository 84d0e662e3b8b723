"""Container primitives: parallel, if_do, while_do, for_each (parallel and sequential),
and nesting; each durable (every branch step is an ordinary committed pointer)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from wfe import DefinitionError, WorkflowBuilder, WorkflowStatus


class Data(BaseModel):
    n: int = 0
    items: list[int] = []
    seen: dict[str, int] = {}
    trace: list[str] = []
    flag: bool = False


def mark(label: str):
    async def body(ctx):
        key = f"{label}:{ctx.item}" if ctx.item is not None else label
        ctx.data.seen[key] = ctx.data.seen.get(key, 0) + 1  # keys merge across branches

    body.__name__ = label
    return body


async def run(make_host, flow, data):
    async with make_host() as host:
        host.register(flow)
        return await host.wait_for_completion(await host.start_workflow(flow.id, data), 30)


async def test_parallel_branches_overlap_and_join(make_host):
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def meet(me: str, other: str):
        async def body(ctx):
            started[me].set()
            await asyncio.wait_for(started[other].wait(), 10)
            ctx.data.seen[me] = 1

        body.__name__ = me
        return body

    flow = (
        WorkflowBuilder("par", data=Data)
        .start_with(mark("before"))
        .parallel()
        .do(lambda b: b.start_with(meet("a", "b")).then(mark("a2")))
        .do(lambda b: b.start_with(meet("b", "a")))
        .join()
        .then(mark("after"))
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.seen == {"before": 1, "a": 1, "a2": 1, "b": 1, "after": 1}


async def test_if_do_runs_its_branch_only_when_true(make_host):
    flow = (
        WorkflowBuilder("iff", data=Data)
        .if_do(lambda ctx: ctx.data.flag, lambda b: b.start_with(mark("yes")))
        .then(mark("after"))
        .build()
    )
    taken = await run(make_host, flow, {"flag": True})
    assert taken.data.seen == {"yes": 1, "after": 1}


async def test_if_do_false_skips_the_branch(make_host):
    flow = (
        WorkflowBuilder("iff", data=Data)
        .if_do(lambda ctx: ctx.data.flag, lambda b: b.start_with(mark("yes")))
        .then(mark("after"))
        .build()
    )
    skipped = await run(make_host, flow, {"flag": False})
    assert skipped.status is WorkflowStatus.COMPLETE and skipped.data.seen == {"after": 1}


async def test_while_do_loops_until_the_condition_fails(make_host):
    async def bump(ctx):
        ctx.data.n += 1

    flow = (
        WorkflowBuilder("loop", data=Data)
        .while_do(lambda ctx: ctx.data.n < 4, lambda b: b.start_with(bump).then(mark("body")))
        .then(mark("after"))
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.n == 4 and inst.data.seen == {"body": 4, "after": 1}


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
async def test_for_each_runs_once_per_item(make_host, parallel):
    order: list[int] = []

    async def visit(ctx):
        order.append(ctx.item)
        await asyncio.sleep(0.01 * (3 - ctx.item))  # later items finish first if parallel
        ctx.data.seen[f"item:{ctx.item}"] = ctx.item * 10

    flow = (
        WorkflowBuilder("each", data=Data)
        .for_each(lambda ctx: ctx.data.items, lambda b: b.start_with(visit), parallel=parallel)
        .then(mark("after"))
        .build()
    )
    inst = await run(make_host, flow, {"items": [1, 2, 3]})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.seen == {"item:1": 10, "item:2": 20, "item:3": 30, "after": 1}
    assert sorted(order) == [1, 2, 3]
    if not parallel:
        assert order == [1, 2, 3]


async def test_for_each_of_nothing_proceeds(make_host):
    flow = (
        WorkflowBuilder("none", data=Data)
        .for_each(lambda ctx: ctx.data.items, lambda b: b.start_with(mark("never")))
        .then(mark("after"))
        .build()
    )
    inst = await run(make_host, flow, {"items": []})
    assert inst.data.seen == {"after": 1}


async def test_nesting_for_each_in_if_in_parallel(make_host):
    flow = (
        WorkflowBuilder("nested", data=Data)
        .parallel()
        .do(lambda b: b.start_with(mark("left")))
        .do(
            lambda b: b.if_do(
                lambda ctx: ctx.data.flag,
                lambda i: i.for_each(
                    lambda ctx: ctx.data.items,
                    lambda e: e.start_with(mark("leaf")).then(mark("leaf2")),
                ),
            )
        )
        .join()
        .then(mark("end"))
        .build()
    )
    inst = await run(make_host, flow, {"flag": True, "items": [7, 8]})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.seen == {
        "left": 1,
        "leaf:7": 1,
        "leaf:8": 1,
        "leaf2:7": 1,
        "leaf2:8": 1,
        "end": 1,
    }


def test_bad_containers_are_definition_errors():
    with pytest.raises(DefinitionError, match="at least one step"):
        WorkflowBuilder("x", data=Data).if_do(lambda ctx: True, lambda b: b)
    with pytest.raises(DefinitionError, match="do"):
        WorkflowBuilder("x", data=Data).parallel().join()
    with pytest.raises(DefinitionError, match="branch"):
        WorkflowBuilder("x", data=Data).if_do(lambda ctx: True, lambda b: b.step("dag", mark("d")))
