"""Bad input gets a clear error naming the problem, and nothing stored changes (SPEC §4.6)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, Field

from wfe import (
    DefinitionError,
    DefinitionNotFound,
    InvalidData,
    NotFound,
    RetryPolicy,
    StepBody,
    WorkflowBuilder,
    WorkflowClient,
    WorkflowStatus,
)
from wfe.registry import Registry

from .conftest import snapshot


class Order(BaseModel):
    n: int = 0
    qty: int = Field(default=1, ge=1)
    blob: str = ""
    anything: object = None


async def add(ctx):
    ctx.data.n += 1


def flow(version: int = 1):
    return WorkflowBuilder("orders", version=version, data=Order).start_with(add).build()


async def healthy_then(host, action):
    """Run ``action`` while a healthy workflow is mid-step; the store must not change,
    and the healthy workflow must still complete afterwards."""
    gate, started = asyncio.Event(), asyncio.Event()

    async def held(ctx):
        started.set()
        await asyncio.wait_for(gate.wait(), 10)
        ctx.data.n += 1

    host.register(WorkflowBuilder("healthy", data=Order).start_with(held).build())
    wid = await host.start_workflow("healthy", {})
    await asyncio.wait_for(started.wait(), 10)
    before = await snapshot(host.backend)
    try:
        result = await action()
        assert await snapshot(host.backend) == before
        return result
    finally:
        gate.set()
        done = await host.wait_for_completion(wid, 30)
        assert done.status is WorkflowStatus.COMPLETE and done.data.n == 1


@pytest.mark.parametrize(
    "case",
    [
        "unknown-definition",
        "unknown-version",
        "invalid-field",
        "wrong-type",
        "not-json",
        "oversized",
        "unknown-id",
        "malformed-id",
        "terminate-unknown",
    ],
)
async def test_bad_calls_raise_and_change_nothing(make_host, case):
    host = make_host()
    host.register(flow())
    calls = {
        "unknown-definition": (DefinitionNotFound, "nope", lambda: host.start_workflow("nope", {})),
        "unknown-version": (
            DefinitionNotFound,
            "v9",
            lambda: host.start_workflow("orders", {}, version=9),
        ),
        "invalid-field": (InvalidData, "qty", lambda: host.start_workflow("orders", {"qty": 0})),
        "wrong-type": (InvalidData, "'n'", lambda: host.start_workflow("orders", {"n": "many"})),
        "not-json": (
            InvalidData,
            "anything",
            lambda: host.start_workflow("orders", Order(anything=object())),
        ),
        "oversized": (
            InvalidData,
            "limit",
            lambda: host.start_workflow("orders", {"blob": "x" * (17 * 1024 * 1024)}),
        ),
        "unknown-id": (NotFound, "4f9a", lambda: host.get_workflow("4f9a-unknown")),
        "malformed-id": (NotFound, "", lambda: host.get_workflow("")),
        "terminate-unknown": (NotFound, "ghost", lambda: host.terminate_workflow("ghost")),
    }
    error, needle, call = calls[case]
    async with host:

        async def attempt():
            with pytest.raises(error) as info:
                await call()
            return info

        info = await healthy_then(host, attempt)
        assert needle in str(info.value)


async def test_client_cannot_start_what_no_host_registered(backend):
    client = WorkflowClient(backend)
    with pytest.raises(DefinitionNotFound, match="never-registered"):
        await client.start_workflow("never-registered", {})
    assert await snapshot(backend) == []


async def test_step_writing_unserializable_data_fails_and_keeps_committed_data(make_host):
    class Poison(StepBody):
        async def run(self, ctx):
            ctx.data.anything = object()  # cannot be stored as JSON

    bad = (
        WorkflowBuilder("poison", data=Order)
        .start_with(add)
        .then(Poison, name="poison")
        .default_retry(RetryPolicy(2))
        .build()
    )
    async with make_host() as host:
        host.register(bad)
        inst = await host.wait_for_completion(await host.start_workflow("poison", {}), 30)
    assert inst.status is WorkflowStatus.FAILED
    assert "'poison'" in inst.error and "'anything'" in inst.error
    assert inst.data.n == 1  # the first step's commit is intact


def test_registering_different_content_under_one_version_is_an_error():
    registry = Registry()
    registry.add(flow())
    registry.add(flow())  # the same shape again is fine
    changed = WorkflowBuilder("orders", version=1, data=Order).start_with(add).then(add).build()
    with pytest.raises(DefinitionError, match="already registered"):
        registry.add(changed)
    with pytest.raises(DefinitionError, match="build"):
        registry.add(WorkflowBuilder("orders", data=Order).start_with(add))  # type: ignore[arg-type]


def test_builder_rejects_bad_definitions_with_names():
    with pytest.raises(DefinitionError, match="BaseModel"):
        WorkflowBuilder("x", data=dict)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="at least one step"):
        WorkflowBuilder("x", data=Order).build()
    with pytest.raises(DefinitionError, match="not a step"):
        WorkflowBuilder("x", data=Order).start_with(42)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="async def"):
        WorkflowBuilder("x", data=Order).step("s", lambda ctx: None)
    with pytest.raises(DefinitionError, match="timezone"):
        from datetime import datetime

        WorkflowBuilder("x", data=Order).step("s", add, scheduled_at=datetime(2030, 1, 1))


async def test_stored_data_that_no_longer_validates_fails_only_that_workflow(make_host, backend):
    # A client without the model class cannot validate; the host that runs it can.
    host = make_host()
    host.register(flow())  # before start: recorded in the store when the host starts
    async with host:
        client = WorkflowClient(backend)
        bad = await client.start_workflow("orders", {"qty": 0})
        good = await client.start_workflow("orders", {"qty": 2})
        failed = await host.wait_for_completion(bad, 30)
        done = await host.wait_for_completion(good, 30)
    assert failed.status is WorkflowStatus.FAILED
    assert "does not match the data model" in failed.error and "qty" in failed.error
    assert done.status is WorkflowStatus.COMPLETE and done.data.n == 1
