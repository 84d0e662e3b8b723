"""decide/branch, schedule and recur: routing on a value, a block run later beside the
chain, and a block run again and again until a condition holds; each on every backend."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import BaseModel

from wfe import DefinitionError, ExecutionResult, RetryPolicy, WorkflowBuilder, WorkflowStatus


class Data(BaseModel):
    kind: str = ""
    trace: list[str] = []
    rounds: int = 0
    seen: dict[str, int] = {}


def mark(label: str):
    async def body(ctx):
        ctx.data.trace = [*ctx.data.trace, label]

    body.__name__ = label
    return body


async def run(make_host, flow, data, timeout=30):
    async with make_host() as host:
        host.register(flow)
        return await host.wait_for_completion(await host.start_workflow(flow.id, data), timeout)


def decision_flow():
    return (
        WorkflowBuilder("decision", data=Data)
        .start_with(mark("start"))
        .decide(lambda ctx: ctx.data.kind)
        .branch("a", lambda b: b.start_with(mark("a1")).then(mark("a2")))
        .branch("b", lambda b: b.start_with(mark("b1")))
        .otherwise(lambda b: b.start_with(mark("other")))
        .end()
        .then(mark("end"))
        .build()
    )


@pytest.mark.parametrize(
    ("kind", "trace"),
    [
        ("a", ["start", "a1", "a2", "end"]),
        ("b", ["start", "b1", "end"]),
        ("zzz", ["start", "other", "end"]),
    ],
)
async def test_decide_runs_only_the_matching_branch(make_host, kind, trace):
    inst = await run(make_host, decision_flow(), {"kind": kind})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.trace == trace


async def test_decide_routes_on_the_previous_steps_outcome(make_host):
    async def classify(ctx):
        return ExecutionResult.outcome(len(ctx.data.kind))

    flow = (
        WorkflowBuilder("outcome-decision", data=Data)
        .start_with(classify)
        .decide()
        .branch(1, lambda b: b.start_with(mark("short")))
        .branch(5, lambda b: b.start_with(mark("long")))
        .end()
        .then(mark("end"))
        .build()
    )
    inst = await run(make_host, flow, {"kind": "lorem"})
    assert inst.data.trace == ["long", "end"]


async def test_decide_without_a_match_or_otherwise_just_proceeds(make_host):
    flow = (
        WorkflowBuilder("no-match", data=Data)
        .decide(lambda ctx: ctx.data.kind)
        .branch("a", lambda b: b.start_with(mark("a")))
        .end()
        .then(mark("end"))
        .build()
    )
    inst = await run(make_host, flow, {"kind": "b"})
    assert inst.status is WorkflowStatus.COMPLETE and inst.data.trace == ["end"]


def test_decide_definition_errors():
    builder = WorkflowBuilder("bad-decide", data=Data).start_with(mark("x"))
    with pytest.raises(DefinitionError, match="at least one branch"):
        builder.decide(lambda ctx: 1).end()
    decision = WorkflowBuilder("dup", data=Data).decide(lambda ctx: 1)
    decision.branch(1, lambda b: b.start_with(mark("one")))
    with pytest.raises(DefinitionError, match="already has a branch for 1"):
        decision.branch(1, lambda b: b.start_with(mark("again")))
    decision.otherwise(lambda b: b.start_with(mark("o")))
    with pytest.raises(DefinitionError, match="already has an otherwise"):
        decision.otherwise(lambda b: b.start_with(mark("o2")))


async def test_schedule_runs_later_without_blocking_the_chain(make_host):
    release = asyncio.Event()

    async def wait_for_main(ctx):
        # The main chain must already be past the schedule when the block runs.
        ctx.data.trace = [*ctx.data.trace, "scheduled"]

    async def main_done(ctx):
        ctx.data.trace = [*ctx.data.trace, "main"]
        release.set()

    flow = (
        WorkflowBuilder("scheduled", data=Data)
        .start_with(mark("start"))
        .schedule(timedelta(seconds=0.5), lambda b: b.start_with(wait_for_main))
        .then(main_done)
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.trace == ["start", "main", "scheduled"]


async def test_schedule_first_in_a_branch_and_computed_delay(make_host):
    flow = (
        WorkflowBuilder("scheduled-first", data=Data)
        .if_do(
            lambda ctx: True,
            lambda b: b.schedule(lambda ctx: 0.3, lambda s: s.start_with(mark("later"))).then(
                mark("now")
            ),
        )
        .then(mark("after-if"))
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    # The if waits for its whole branch, scheduled block included.
    assert inst.data.trace == ["now", "later", "after-if"]


async def test_schedule_survives_a_host_restart(make_host):
    flow = (
        WorkflowBuilder("scheduled-restart", data=Data)
        .start_with(mark("start"))
        .schedule(timedelta(seconds=1), lambda b: b.start_with(mark("later")))
        .build()
    )
    first = make_host()
    first.register(flow)
    async with first:
        wid = await first.start_workflow(flow.id, {})
        for _ in range(200):
            if (await first.get_workflow(wid)).data.trace == ["start"]:
                break
            await asyncio.sleep(0.02)
    assert (await first.get_workflow(wid)).status is WorkflowStatus.RUNNABLE
    second = make_host()
    second.register(flow)
    async with second:
        inst = await second.wait_for_completion(wid, 30)
    assert inst.data.trace == ["start", "later"]


async def test_recur_repeats_until_the_condition_holds(make_host):
    async def tick(ctx):
        ctx.data.rounds += 1

    flow = (
        WorkflowBuilder("recurring", data=Data)
        .start_with(mark("start"))
        .recur(0.05, lambda ctx: ctx.data.rounds >= 3, lambda b: b.start_with(tick))
        .then(mark("end"))
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.rounds == 3 and inst.data.trace == ["start", "end"]


async def test_recur_already_done_runs_no_round(make_host):
    flow = (
        WorkflowBuilder("recur-none", data=Data)
        .recur(timedelta(hours=1), lambda ctx: True, lambda b: b.start_with(mark("never")))
        .then(mark("end"))
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.data.trace == ["end"]


async def test_recur_waits_the_interval_as_a_stored_time(make_host):
    async def tick(ctx):
        ctx.data.rounds += 1

    flow = (
        WorkflowBuilder("recur-timer", data=Data)
        .recur(timedelta(hours=1), lambda ctx: ctx.data.rounds >= 2, lambda b: b.start_with(tick))
        .build()
    )
    host = make_host()
    host.register(flow)
    async with host:
        wid = await host.start_workflow(flow.id, {})
        for _ in range(200):
            if (await host.get_workflow(wid)).data.rounds == 1:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        inst = await host.get_workflow(wid)
        pointers = await host.backend.persistence.get_pointers(wid)
    assert inst.status is WorkflowStatus.RUNNABLE and inst.data.rounds == 1
    recur = next(p for p in pointers if p.step_name == "recur")
    assert recur.status.value == "SLEEPING" and recur.sleep_until is not None


def test_negative_schedule_and_recur_durations_are_definition_errors():
    with pytest.raises(DefinitionError, match="schedule delay must not be negative"):
        WorkflowBuilder("neg", data=Data).schedule(-1, lambda b: b.start_with(mark("x")))
    with pytest.raises(DefinitionError, match="recur interval must not be negative"):
        WorkflowBuilder("neg", data=Data).recur(
            -1, lambda c: True, lambda b: b.start_with(mark("x"))
        )


async def test_a_computed_negative_delay_fails_the_step_with_its_name(make_host):
    flow = (
        WorkflowBuilder("neg-runtime", data=Data)
        .schedule(lambda ctx: -5, lambda b: b.start_with(mark("x")), name="later")
        .default_retry(RetryPolicy(max_attempts=1))
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.FAILED
    assert "later" in inst.error and "schedule delay must not be negative" in inst.error


async def test_nested_decide_in_for_each_in_parallel(make_host):
    def count(label):
        async def body(ctx):
            key = f"{label}:{ctx.item}"
            ctx.data.seen[key] = ctx.data.seen.get(key, 0) + 1

        body.__name__ = label
        return body

    flow = (
        WorkflowBuilder("nested-decide", data=Data)
        .parallel()
        .do(
            lambda p: p.start_with(mark("p1")).for_each(
                lambda ctx: [1, 2, 3, 4],
                lambda f: (
                    f.decide(lambda ctx: ctx.item % 2)
                    .branch(0, lambda b: b.start_with(count("even")))
                    .branch(1, lambda b: b.start_with(count("odd")))
                    .end()
                ),
            )
        )
        .do(lambda p: p.start_with(mark("p2")))
        .join()
        .then(mark("end"))
        .build()
    )
    inst = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.seen == {"odd:1": 1, "even:2": 1, "odd:3": 1, "even:4": 1}
    assert inst.data.trace[-1] == "end"


async def test_end_workflow_completes_at_once_and_cancels_waits(make_host):
    completed: list[str] = []
    flow = (
        WorkflowBuilder("ending", data=Data)
        .parallel()
        .do(lambda b: b.wait_for("never", "k").then(mark("never")))
        .do(
            lambda b: b.start_with(mark("check"))
            .decide(lambda ctx: ctx.data.kind)
            .branch("stop", lambda d: d.start_with(mark("stopping")).end_workflow())
            .end()
        )
        .join()
        .then(mark("after"))
        .build()
    )
    async with make_host() as host:
        host.subscribe(lambda e: completed.append(type(e).__name__))
        host.register(flow)
        wid = await host.start_workflow(flow.id, {"kind": "stop"})
        inst = await host.wait_for_completion(wid, 30)
        pointers = await host.backend.persistence.get_pointers(wid)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.trace == ["check", "stopping"]
    statuses = {p.step_name: p.status.value for p in pointers}
    assert statuses["wait_for_never"] == "CANCELLED"
    assert completed.count("WorkflowCompleted") == 1
