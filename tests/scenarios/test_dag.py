"""DAG workflows: concurrency of independent steps, all/any joins, run_if, merges."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from wfe import DefinitionError, WorkflowBuilder, WorkflowStatus


class Data(BaseModel):
    order: list[str] = []
    marks: dict[str, int] = {}
    a: int = 0
    b: int = 0


async def test_independent_steps_overlap_in_time(make_host):
    # a and b each wait until the other has started: only concurrency can finish this.
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    def branch(me: str, other: str):
        async def body(ctx):
            started[me].set()
            await asyncio.wait_for(started[other].wait(), 10)
            ctx.data.marks[me] = 1

        return body

    async def join(ctx):
        ctx.data.order.append("join")

    flow = (
        WorkflowBuilder("overlap", data=Data)
        .step("a", branch("a", "b"))
        .step("b", branch("b", "a"))
        .step("join", join, depends_on=["a", "b"])
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("overlap", {}), 30)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    # Writes of different keys of one mapping by concurrent steps are both kept.
    assert inst.data.marks == {"a": 1, "b": 1}
    assert inst.data.order == ["join"]


async def test_depends_on_any_does_not_wait_for_all(make_host):
    release_slow = asyncio.Event()
    ran: list[str] = []

    def body(name: str, before=None, after=None):
        async def run(ctx):
            if before is not None:
                await asyncio.wait_for(before.wait(), 10)
            ran.append(name)
            ctx.data.marks[name] = 1  # different keys: concurrent writes all survive
            if after is not None:
                after.set()

        return run

    flow = (
        WorkflowBuilder("any", data=Data)
        .step("fast", body("fast"))
        .step("slow", body("slow", before=release_slow))  # released only by "first"
        .step("first", body("first", after=release_slow), depends_on_any=["fast", "slow"])
        .step("last", body("last"), depends_on=["fast", "slow", "first"])
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("any", {}), 30)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert ran == ["fast", "first", "slow", "last"]
    assert inst.data.marks == {"fast": 1, "first": 1, "slow": 1, "last": 1}


async def test_run_if_false_skips_and_dependents_proceed(make_host):
    ran: list[str] = []

    def body(name: str):
        async def run(ctx):
            ran.append(name)
            ctx.data.order.append(name)

        return run

    flow = (
        WorkflowBuilder("skip", data=Data)
        .step("check", body("check"))
        .step("optional", body("optional"), depends_on=["check"], run_if=lambda ctx: ctx.data.a > 0)
        .step("after", body("after"), depends_on=["optional"])
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        skipped = await host.wait_for_completion(await host.start_workflow("skip", {"a": 0}), 30)
        taken = await host.wait_for_completion(await host.start_workflow("skip", {"a": 1}), 30)
        pointers = await host.backend.persistence.get_pointers(skipped.id)
    assert skipped.status is WorkflowStatus.COMPLETE and skipped.data.order == ["check", "after"]
    assert taken.data.order == ["check", "optional", "after"]
    assert {p.step_name: p.status.value for p in pointers}["optional"] == "SKIPPED"


async def test_each_step_sees_committed_data_and_writes_merge(make_host):
    gate = asyncio.Event()

    async def set_a(ctx):
        await asyncio.wait_for(gate.wait(), 10)
        ctx.data.a = 1

    async def set_b(ctx):
        ctx.data.b = 2
        gate.set()

    async def check(ctx):
        ctx.data.order.append(f"{ctx.data.a}{ctx.data.b}")

    flow = (
        WorkflowBuilder("merge", data=Data)
        .step("set_a", set_a)
        .step("set_b", set_b)
        .step("check", check, depends_on=["set_a", "set_b"])
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("merge", {}), 30)
    assert (inst.data.a, inst.data.b, inst.data.order) == (1, 2, ["12"])


def test_cycles_and_unknown_dependencies_are_definition_errors():
    async def noop(ctx):
        return None

    builder = WorkflowBuilder("cyclic", data=Data)
    builder.step("a", noop, depends_on=["c"]).step("b", noop, depends_on=["a"])
    builder.step("c", noop, depends_on=["b"])
    try:
        builder.build()
        raise AssertionError("a cycle must not build")
    except DefinitionError as exc:
        assert "cycle" in str(exc) and "cyclic" in str(exc)
        assert all(name in str(exc) for name in ("a", "b", "c"))
    for bad, needle in [
        (WorkflowBuilder("self", data=Data).step("a", noop, depends_on=["a"]), "itself"),
        (WorkflowBuilder("dangling", data=Data).step("a", noop, depends_on=["ghost"]), "ghost"),
        (WorkflowBuilder("dup", data=Data).step("a", noop).step("a", noop), "duplicate"),
    ]:
        try:
            bad.build()
            raise AssertionError(f"{needle} must not build")
        except DefinitionError as exc:
            assert needle in str(exc)
