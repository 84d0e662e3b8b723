"""Workflows for the kill -9 tests of sagas and sub-workflows, run by host_proc.

* ``sagaflow``: a saga books a, b and c (each with a compensation), then a step that
  always fails; the compensations run as undo:c, undo:b, undo:a. ``--hold-undo X``
  makes the compensation of X block forever (the host is killed there).
* ``parentflow``: starts ``childflow`` as a sub-workflow with ``{"n": data.n}``; the
  child runs c1, c2, c3 (each adds to its ``n``), and the parent copies the child's
  ``n`` back. ``--hold-child-step NAME`` makes that child step block forever.

Every body writes a "start" record to the history file through ``write``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from wfe import RetryPolicy, StepContext, WorkflowBuilder, WorkflowDefinition

Write = Callable[[dict[str, Any]], None]


class Trip(BaseModel):
    booked: list[str] = []
    undone: list[str] = []


class Numbers(BaseModel):
    n: int = 0
    result: int = 0


def _started(write: Write, ctx: StepContext[Any], step: str) -> None:
    write(
        {
            "host": os.getpid(),
            "step": step,
            "event": "start",
            "attempt": ctx.attempt,
            "wf": ctx.workflow_id,
        }
    )


def saga_flow(write: Write, hold_undo: str | None) -> WorkflowDefinition:
    def book(name: str) -> Callable[[StepContext[Trip]], Any]:
        async def body(ctx: StepContext[Trip]) -> None:
            _started(write, ctx, f"book:{name}")
            ctx.data.booked = [*ctx.data.booked, name]

        return body

    def undo(name: str) -> Callable[[StepContext[Trip]], Any]:
        async def body(ctx: StepContext[Trip]) -> None:
            _started(write, ctx, f"undo:{name}")
            if name == hold_undo:
                await asyncio.sleep(3600)  # killed here
            ctx.data.undone = [*ctx.data.undone, name]

        return body

    async def refuse(ctx: StepContext[Trip]) -> None:
        _started(write, ctx, "refuse")
        raise RuntimeError("payment refused")

    return (
        WorkflowBuilder("sagaflow", version=1, data=Trip)
        .default_retry(RetryPolicy(max_attempts=1))
        .saga(
            lambda s: (
                s.start_with(book("a"), name="a")
                .compensate_with(undo("a"), name="undo_a")
                .then(book("b"), name="b")
                .compensate_with(undo("b"), name="undo_b")
                .then(book("c"), name="c")
                .compensate_with(undo("c"), name="undo_c")
                .then(refuse, name="refuse")
            ),
            name="trip",
        )
        .build()
    )


def sub_workflow_flows(write: Write, hold_child_step: str | None) -> list[WorkflowDefinition]:
    def child_step(name: str, add: int) -> Callable[[StepContext[Numbers]], Any]:
        async def body(ctx: StepContext[Numbers]) -> None:
            _started(write, ctx, f"child:{name}")
            if name == hold_child_step:
                await asyncio.sleep(3600)  # killed here
            ctx.data.n += add

        return body

    async def prepare(ctx: StepContext[Numbers]) -> None:
        _started(write, ctx, "parent:prepare")
        ctx.data.n += 1

    async def finish(ctx: StepContext[Numbers]) -> None:
        _started(write, ctx, "parent:finish")

    child = (
        WorkflowBuilder("childflow", version=1, data=Numbers)
        .start_with(child_step("c1", 10), name="c1")
        .then(child_step("c2", 100), name="c2")
        .then(child_step("c3", 1000), name="c3")
        .build()
    )
    parent = (
        WorkflowBuilder("parentflow", version=1, data=Numbers)
        .start_with(prepare, name="prepare")
        .sub_workflow(
            "childflow",
            input=lambda ctx: Numbers(n=ctx.data.n),
            output=lambda ctx, done: setattr(ctx.data, "result", done.n),
            name="child",
        )
        .then(finish, name="finish")
        .build()
    )
    return [child, parent]
