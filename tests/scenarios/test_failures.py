"""Retries with each back-off, attempt counting, failure actions, error behaviours."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from wfe import (
    Backoff,
    ErrorBehavior,
    ExecutionResult,
    FailureAction,
    RetryPolicy,
    StepBody,
    StepTimeout,
    WorkflowBuilder,
    WorkflowStatus,
)
from wfe import events as ev


class Data(BaseModel):
    attempts: list[int] = []
    order: list[str] = []
    note: str = ""


def flaky(failures: int):
    async def body(ctx):
        ctx.data.attempts.append(ctx.attempt)  # discarded for failed attempts
        if ctx.attempt <= failures:
            raise RuntimeError(f"boom {ctx.attempt}")

    return body


@pytest.mark.parametrize(
    "backoff",
    [
        Backoff.fixed(0.05),
        Backoff.exponential(0.02, 0.1),
        Backoff.linear(0.02, 0.1),
    ],
    ids=["fixed", "exponential", "linear"],
)
async def test_retry_with_each_backoff_counts_attempts(make_host, backoff):
    retries: list[ev.StepRetrying] = []
    flow = (
        WorkflowBuilder("retry", data=Data)
        .step("flaky", flaky(2), retry=RetryPolicy(max_attempts=3, backoff=backoff))
        .build()
    )
    host = make_host()
    host.subscribe(lambda e: retries.append(e) if isinstance(e, ev.StepRetrying) else None)
    async with host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("retry", {}), 30)
    assert inst.status is WorkflowStatus.COMPLETE, inst.error
    assert inst.data.attempts == [3]  # only the successful attempt's writes commit
    assert [e.attempt for e in retries] == [1, 2]
    assert all("boom" in e.error for e in retries)


def test_backoff_delays_are_deterministic():
    assert [Backoff.fixed(2).delay(n) for n in (1, 2, 3)] == [2, 2, 2]
    assert [Backoff.exponential(1, 5).delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert [Backoff.linear(3, 7).delay(n) for n in (1, 2, 3)] == [3, 6, 7]
    jittered = Backoff.fixed(1, jitter=0.5).delay(1)
    assert 1 <= jittered <= 1.5
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


async def test_fail_workflow_after_last_attempt_names_the_step(make_host):
    flow = (
        WorkflowBuilder("fails", data=Data)
        .step("bad", flaky(99), retry=RetryPolicy(2, Backoff.fixed(0.01)))
        .step("never", flaky(0), depends_on=["bad"])
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("fails", {}), 30)
        pointers = await host.backend.persistence.get_pointers(inst.id)
    assert inst.status is WorkflowStatus.FAILED
    assert "'bad'" in inst.error and "2 attempts" in inst.error and "boom 2" in inst.error
    assert [p.step_name for p in pointers] == ["bad"]


async def test_default_retry_is_finite(make_host):
    flow = WorkflowBuilder("default", data=Data).step("bad", flaky(99)).build()
    host = make_host(default_retry=RetryPolicy(3, Backoff.fixed(0.01)))
    async with host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("default", {}), 30)
    assert inst.status is WorkflowStatus.FAILED and "3 attempts" in inst.error


async def test_continue_lets_dependents_run(make_host):
    async def after(ctx):
        ctx.data.order.append("after")

    class Noted(StepBody):
        async def run(self, ctx):
            raise ValueError("nope")

        async def on_failure(self, ctx, error):
            ctx.data.note = f"handled {error}"

    flow = (
        WorkflowBuilder("cont", data=Data)
        .step("bad", Noted, retry=RetryPolicy(1), on_failure=FailureAction.CONTINUE)
        .step("after", after, depends_on=["bad"])
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("cont", {}), 30)
    assert inst.status is WorkflowStatus.COMPLETE
    assert inst.data.order == ["after"] and inst.data.note == "handled nope"


async def test_retry_indefinitely_outlives_max_attempts(make_host):
    flow = (
        WorkflowBuilder("forever", data=Data)
        .step(
            "flaky",
            flaky(5),
            retry=RetryPolicy(2, Backoff.fixed(0.01)),
            on_failure=FailureAction.RETRY_INDEFINITELY,
        )
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("forever", {}), 30)
    assert inst.status is WorkflowStatus.COMPLETE and inst.data.attempts == [6]


async def test_is_retryable_false_fails_at_once(make_host):
    class Fatal(StepBody):
        async def run(self, ctx):
            ctx.data.attempts.append(ctx.attempt)
            raise KeyError("fatal")

        def is_retryable(self, error):
            return not isinstance(error, KeyError)

    flow = WorkflowBuilder("fatal", data=Data).step("s", Fatal, retry=RetryPolicy(5)).build()
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("fatal", {}), 30)
    assert inst.status is WorkflowStatus.FAILED and "1 attempt:" in inst.error


async def test_step_timeout(make_host):
    import asyncio

    async def hang(ctx):
        await asyncio.sleep(30)

    flow = (
        WorkflowBuilder("slow", data=Data)
        .step("hang", hang, timeout=0.1, retry=RetryPolicy(1))
        .build()
    )
    async with make_host() as host:
        host.register(flow)
        inst = await host.wait_for_completion(await host.start_workflow("slow", {}), 30)
    assert inst.status is WorkflowStatus.FAILED and StepTimeout.__name__ in inst.error


async def test_chain_error_behaviours(make_host):
    calls = {"n": 0}

    class FailOnce(StepBody):
        async def run(self, ctx):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("first call fails")
            ctx.data.order.append("ok")
            return ExecutionResult.next()

    suspending = (
        WorkflowBuilder("susp", data=Data)
        .start_with(FailOnce)
        .on_error(ErrorBehavior.suspend())
        .build()
    )
    terminating = (
        WorkflowBuilder("term", data=Data)
        .start_with(flaky(9))
        .on_error(ErrorBehavior.terminate())
        .build()
    )
    retrying = (
        WorkflowBuilder("retr", data=Data)
        .start_with(flaky(2))
        .on_error(ErrorBehavior.retry(0.01, 2))
        .build()
    )
    async with make_host() as host:
        for flow in (suspending, terminating, retrying):
            host.register(flow)
        sid = await host.start_workflow("susp", {})
        for _ in range(200):
            if (await host.get_workflow(sid)).status is WorkflowStatus.SUSPENDED:
                break
            await asyncio_sleep(0.02)
        assert (await host.get_workflow(sid)).status is WorkflowStatus.SUSPENDED
        await host.resume_workflow(sid)
        resumed = await host.wait_for_completion(sid, 30)
        terminated = await host.wait_for_completion(await host.start_workflow("term", {}), 30)
        retried = await host.wait_for_completion(await host.start_workflow("retr", {}), 30)
    assert resumed.status is WorkflowStatus.COMPLETE and resumed.data.order == ["ok"]
    assert terminated.status is WorkflowStatus.TERMINATED
    assert retried.status is WorkflowStatus.COMPLETE and retried.data.attempts == [3]


async def asyncio_sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
