"""The side-by-side workloads on wfe's public API (issue 6), timed by the same harness
as the DBOS ones (``benchmarks/peers/harness.py``):

    .venv/bin/python -m benchmarks.wfe_workloads --workload one_step \
        --db postgresql://postgres@127.0.0.1/wfe_bench_run --n 2000

One ``WorkflowHost.from_url(url)`` with its default options starts every workflow and
runs it. ``--host-option key=value`` (repeatable; the value is read as JSON when it
parses, else taken as a string) passes an option to ``from_url`` for experiments, e.g.
``--host-option log_events=false``; the runner never passes one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from benchmarks.peers.harness import Engine, emit, parse_args, run
from wfe import StepContext, WorkflowBuilder, WorkflowDefinition, WorkflowHost, WorkflowStatus

DAG_WIDTH = 10


class Count(BaseModel):
    n: int = 0


class Fan(BaseModel):
    # One field per DAG step: concurrent steps merge without touching each other's writes.
    s0: int = 0
    s1: int = 0
    s2: int = 0
    s3: int = 0
    s4: int = 0
    s5: int = 0
    s6: int = 0
    s7: int = 0
    s8: int = 0
    s9: int = 0


async def add_one(ctx: StepContext[Count]) -> None:
    ctx.data.n += 1


def bump(field: str) -> Callable[[StepContext[Fan]], Awaitable[None]]:
    async def body(ctx: StepContext[Fan]) -> None:
        setattr(ctx.data, field, getattr(ctx.data, field) + 1)

    return body


def dag10() -> WorkflowDefinition:
    builder = WorkflowBuilder("dag10", version=1, data=Fan)
    for i in range(DAG_WIDTH):
        builder = builder.step(f"s{i}", bump(f"s{i}"))  # no depends_on: all run at once
    return builder.build()


DEFINITIONS = [
    WorkflowBuilder("one_step", version=1, data=Count).start_with(add_one).build(),
    WorkflowBuilder("three_step", version=1, data=Count)
    .start_with(add_one)
    .then(add_one)
    .then(add_one)
    .build(),
    dag10(),
]

# What a completed workflow's data must be: the steps ran, and no DAG write was lost.
EXPECTED: dict[str, dict[str, int]] = {
    "one_step": {"n": 1},
    "three_step": {"n": 3},
    "dag10": {f"s{i}": 1 for i in range(DAG_WIDTH)},
}


def host_option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def add_host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host-option", type=host_option, action="append", default=[])


async def open_engine(url: str, options: dict[str, Any]) -> Engine:
    host = WorkflowHost.from_url(url, **options)
    for definition in DEFINITIONS:
        host.register(definition)
    await host.start()

    async def start(workload: str) -> tuple[str, str]:
        return workload, await host.start_workflow(workload, {})

    async def finish(started: tuple[str, str]) -> None:
        workload, workflow_id = started
        instance = await host.wait_for_completion(workflow_id, timeout=600)
        data = instance.data.model_dump()
        if instance.status is not WorkflowStatus.COMPLETE or any(
            data[k] != v for k, v in EXPECTED[workload].items()
        ):
            raise AssertionError(f"workflow {workflow_id}: {instance.status} {data}")

    async def close() -> None:
        await host.stop()

    return Engine("wfe", start, finish, close)


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_host_option)
    options = dict(args.host_option)
    engine = await open_engine(args.db, options)
    result = await run(engine, args)
    if options:
        result["host_options"] = options
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
