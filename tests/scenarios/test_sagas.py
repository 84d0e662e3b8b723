"""Sagas: when a step inside fails for good, the compensations of the failed step and of
every completed step run, newest first, durably; then the saga's own policy applies."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from wfe import (
    DefinitionError,
    ErrorBehavior,
    RetryPolicy,
    WorkflowBuilder,
    WorkflowStatus,
)

NO_RETRY = RetryPolicy(max_attempts=1)


class Data(BaseModel):
    trace: list[str] = []
    fail_at: str = ""
    attempts: dict[str, int] = {}
    items: list[int] = []


def step(label: str):
    async def body(ctx):
        ctx.data.attempts[label] = ctx.data.attempts.get(label, 0) + 1
        if ctx.data.fail_at == label:
            raise RuntimeError(f"{label} broke")
        suffix = f":{ctx.item}" if ctx.item is not None else ""
        ctx.data.trace = [*ctx.data.trace, label + suffix]

    body.__name__ = label
    return body


def undo(label: str):
    async def body(ctx):
        suffix = f":{ctx.item}" if ctx.item is not None else ""
        ctx.data.trace = [*ctx.data.trace, f"undo-{label}{suffix}"]

    body.__name__ = f"undo_{label}"
    return body


def booking(**saga_options):
    return (
        WorkflowBuilder("booking", data=Data)
        .default_retry(NO_RETRY)
        .start_with(step("begin"))
        .saga(
            lambda s: (
                s.start_with(step("flight"))
                .compensate_with(undo("flight"))
                .then(step("hotel"))
                .compensate_with(undo("hotel"))
                .then(step("log"))  # no compensation: nothing to undo
                .then(step("car"))
                .compensate_with(undo("car"))
            ),
            name="trip",
            **saga_options,
        )
        .then(step("end"))
        .build()
    )


async def run(make_host, flow, data, timeout=30):
    async with make_host() as host:
        host.register(flow)
        wid = await host.start_workflow(flow.id, data)
        return await host.wait_for_completion(wid, timeout), host


async def test_a_saga_that_succeeds_runs_no_compensation(make_host):
    inst, _ = await run(make_host, booking(), {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.trace == ["begin", "flight", "hotel", "log", "car", "end"]


async def test_compensations_run_newest_first_then_the_workflow_fails(make_host):
    inst, host = await run(make_host, booking(), {"fail_at": "car"})
    assert inst.status is WorkflowStatus.FAILED
    # The failed step's own compensation first: it may have partly happened.
    assert inst.data.trace == [
        "begin",
        "flight",
        "hotel",
        "log",
        "undo-car",
        "undo-hotel",
        "undo-flight",
    ]
    assert "saga 'trip' rolled back" in inst.error and "car broke" in inst.error
    pointers = {p.step_name: p for p in await host.backend.persistence.get_pointers(inst.id)}
    assert pointers["flight"].status.value == "COMPENSATED"
    assert pointers["hotel"].status.value == "COMPENSATED"
    assert pointers["car"].status.value == "FAILED"
    assert pointers["log"].status.value == "COMPLETE"
    assert "end" not in pointers


async def test_only_completed_steps_are_compensated(make_host):
    inst, _ = await run(make_host, booking(), {"fail_at": "hotel"})
    assert inst.data.trace == ["begin", "flight", "undo-hotel", "undo-flight"]


async def test_resume_after_compensation_carries_on(make_host):
    flow = booking(resume_after_compensation=True)
    inst, _ = await run(make_host, flow, {"fail_at": "hotel"})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.trace == ["begin", "flight", "undo-hotel", "undo-flight", "end"]


async def test_the_step_retries_before_the_saga_compensates(make_host):
    flaky_calls = {"n": 0}

    async def flaky(ctx):
        flaky_calls["n"] += 1
        if flaky_calls["n"] < 3:
            raise RuntimeError("transient")
        ctx.data.trace = [*ctx.data.trace, "flaky"]

    flow = (
        WorkflowBuilder("retry-in-saga", data=Data)
        .saga(
            lambda s: (
                s.start_with(step("a"))
                .compensate_with(undo("a"))
                .then(flaky)
                .on_error(ErrorBehavior.retry(0.01, 3))
            )
        )
        .build()
    )
    inst, _ = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.trace == ["a", "flaky"]


async def test_compensate_behaviour_skips_the_retries(make_host):
    calls = {"b": 0}

    async def b(ctx):
        calls["b"] += 1  # a failed step's data changes are not kept: count outside
        raise RuntimeError("b broke")

    flow = (
        WorkflowBuilder("compensate-now", data=Data)
        .saga(
            lambda s: (
                s.start_with(step("a"))
                .compensate_with(undo("a"))
                .then(b)
                .on_error(ErrorBehavior.compensate())
            )
        )
        .build()
    )
    inst, _ = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.FAILED
    assert calls["b"] == 1  # the default retry policy would give 3
    assert inst.data.trace == ["a", "undo-a"]


async def test_a_retried_saga_runs_again_from_its_start(make_host):
    calls = {"n": 0}

    async def second(ctx):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("first time fails")
        ctx.data.trace = [*ctx.data.trace, "b"]

    flow = (
        WorkflowBuilder("saga-retry", data=Data)
        .default_retry(NO_RETRY)
        .saga(lambda s: s.start_with(step("a")).compensate_with(undo("a")).then(second))
        .on_error(ErrorBehavior.retry(0.01, 2))
        .then(step("end"))
        .build()
    )
    inst, _ = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.trace == ["a", "undo-a", "a", "b", "end"]


async def test_compensation_of_for_each_items_inside_a_saga(make_host):
    async def ship(ctx):
        if ctx.item == 3:
            raise RuntimeError("cannot ship 3")
        ctx.data.trace = [*ctx.data.trace, f"ship:{ctx.item}"]

    flow = (
        WorkflowBuilder("saga-each", data=Data)
        .default_retry(NO_RETRY)
        .saga(
            lambda s: (
                s.start_with(step("reserve"))
                .compensate_with(undo("reserve"))
                .for_each(
                    lambda ctx: [1, 2, 3],
                    lambda b: b.start_with(ship).compensate_with(undo("ship")),
                    parallel=False,
                )
            )
        )
        .build()
    )
    inst, _ = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.FAILED
    assert inst.data.trace == [
        "reserve",
        "ship:1",
        "ship:2",
        "undo-ship:3",
        "undo-ship:2",
        "undo-ship:1",
        "undo-reserve",
    ]


async def test_a_parallel_sibling_finishes_and_is_compensated_too(make_host):
    """A branch running when its sibling fails completes, starts nothing more, and is
    undone; a branch still waiting is cancelled."""
    slow_started = asyncio.Event()

    async def slow(ctx):
        slow_started.set()
        await asyncio.sleep(0.3)
        ctx.data.trace = [*ctx.data.trace, "slow"]

    async def fails(ctx):
        await asyncio.wait_for(slow_started.wait(), 10)
        raise RuntimeError("fast failure")

    flow = (
        WorkflowBuilder("saga-parallel", data=Data)
        .default_retry(NO_RETRY)
        .saga(
            lambda s: (
                s.parallel()
                .do(
                    lambda b: (
                        b.start_with(slow).compensate_with(undo("slow")).then(step("after-slow"))
                    )
                )
                .do(lambda b: b.start_with(fails))
                .do(lambda b: b.wait_for("never", "k"))
                .join()
            )
        )
        .build()
    )
    inst, host = await run(make_host, flow, {})
    assert inst.status is WorkflowStatus.FAILED, inst.error
    assert inst.data.trace == ["slow", "undo-slow"]
    pointers = await host.backend.persistence.get_pointers(inst.id)
    statuses = {p.step_name: p.status.value for p in pointers}
    assert statuses["wait_for_never"] == "CANCELLED"
    assert "after-slow" not in statuses


async def test_a_failing_compensation_fails_the_workflow_with_its_name(make_host):
    async def bad_undo(ctx):
        raise RuntimeError("cannot undo")

    flow = (
        WorkflowBuilder("bad-undo", data=Data)
        .default_retry(NO_RETRY)
        .saga(
            lambda s: (
                s.start_with(step("a")).compensate_with(bad_undo, name="undo_a").then(step("b"))
            )
        )
        .build()
    )
    inst, _ = await run(make_host, flow, {"fail_at": "b"})
    assert inst.status is WorkflowStatus.FAILED
    assert "undo_a" in inst.error and "cannot undo" in inst.error


async def test_nested_sagas_roll_back_the_outer_one(make_host):
    flow = (
        WorkflowBuilder("nested-saga", data=Data)
        .default_retry(NO_RETRY)
        .saga(
            lambda outer: (
                outer.start_with(step("o1"))
                .compensate_with(undo("o1"))
                .saga(
                    lambda inner: (
                        inner.start_with(step("i1")).compensate_with(undo("i1")).then(step("i2"))
                    )
                )
            ),
            name="outer",
        )
        .build()
    )
    inst, _ = await run(make_host, flow, {"fail_at": "i2"})
    assert inst.status is WorkflowStatus.FAILED
    assert inst.data.trace == ["o1", "i1", "undo-i1", "undo-o1"]
    assert "saga 'outer' rolled back" in inst.error


def test_saga_definition_errors():
    with pytest.raises(DefinitionError, match="only works on a step inside saga"):
        WorkflowBuilder("x", data=Data).start_with(step("a")).compensate_with(undo("a"))
    with pytest.raises(DefinitionError, match=r"compensate\(\) only works on a step inside saga"):
        WorkflowBuilder("x", data=Data).start_with(step("a")).on_error(ErrorBehavior.compensate())
    with pytest.raises(DefinitionError, match="already has a compensation"):
        WorkflowBuilder("x", data=Data).saga(
            lambda s: s.start_with(step("a")).compensate_with(undo("a")).compensate_with(undo("b"))
        )
    with pytest.raises(DefinitionError, match="a branch needs at least one step"):
        WorkflowBuilder("x", data=Data).saga(lambda s: s)
