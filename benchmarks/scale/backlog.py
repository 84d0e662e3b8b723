"""Drain throughput with a large backlog vs a small one (issue 6): claims must stay
O(batch), not O(backlog), so 100,000 pending workflows drain at >= 0.8x the rate of 1,000.

    .venv/bin/python -m benchmarks.scale.backlog --db postgresql://postgres@127.0.0.1:5432/wfe_bench_scale

For each size P (its own database: ``_p<P>`` appended to the name, dropped and created),
with no host running, a ``WorkflowClient`` enqueues P one-step workflows; then one host
in this process drains them, timed from its start until the last WorkflowCompleted.
Also timed: the first ``min(1000, smallest P)`` completions, the same work at every size.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from pydantic import BaseModel

from benchmarks.scale.common import (
    BenchError,
    backend_of,
    derived_url,
    drop_database,
    fresh_database,
    run,
    say,
    start_many,
    verify_all_complete,
)
from wfe import StepContext, WorkflowBuilder, WorkflowClient, WorkflowHost
from wfe.events import LifecycleEvent, WorkflowCompleted, WorkflowFailed, WorkflowTerminated

TARGET = 0.8


class Item(BaseModel):
    i: int = 0


async def noop(ctx: StepContext[Item]) -> None:
    return None


FLOW = WorkflowBuilder("scale_backlog", version=1, data=Item).start_with(noop).build()


async def record_definition(url: str) -> None:
    """A client may start only what a host has registered (and so recorded)."""
    host = WorkflowHost.from_url(url)
    host.register(FLOW)
    async with host:
        pass


async def enqueue(url: str, size: int) -> float:
    async with WorkflowClient.from_url(url) as client:
        began = time.perf_counter()
        await start_many(client, FLOW.id, (Item(i=i) for i in range(size)))
        return time.perf_counter() - began


class Completions:
    """Counts completions (a subscriber: no per-workflow polling of the database)."""

    def __init__(self, size: int, first: int) -> None:
        self.size, self.first = size, first
        self.done = 0
        self.first_at: float | None = None
        self.failed: list[str] = []
        self.finished = asyncio.Event()

    def __call__(self, event: LifecycleEvent) -> None:
        if isinstance(event, WorkflowCompleted):
            self.done += 1
            if self.done == self.first:
                self.first_at = time.perf_counter()
            if self.done == self.size:
                self.finished.set()
        elif isinstance(event, WorkflowFailed | WorkflowTerminated):
            self.failed.append(event.workflow_id)
            self.finished.set()  # fail fast


async def drain(url: str, size: int, first: int, timeout: float) -> dict[str, Any]:
    host = WorkflowHost.from_url(url)
    host.register(FLOW)
    seen = Completions(size, first)
    host.subscribe(seen)
    began = time.perf_counter()
    await host.start()
    started = time.perf_counter()
    try:
        deadline = began + timeout
        while not seen.finished.is_set():
            if time.perf_counter() > deadline:
                raise BenchError(f"drain of {size} timed out after {timeout:g}s: {seen.done} done")
            try:
                await asyncio.wait_for(seen.finished.wait(), 5)
            except TimeoutError:
                rate = seen.done / (time.perf_counter() - began)
                say(f"  drained {seen.done}/{size} ({rate:.0f}/s)")
        ended = time.perf_counter()
    finally:
        await host.stop()
    if seen.failed:
        raise BenchError(f"{len(seen.failed)} workflows failed, e.g. {seen.failed[0]}")
    assert seen.first_at is not None
    async with WorkflowClient.from_url(url) as client:
        await verify_all_complete(url, client, size)
    return {
        "drain_s": round(ended - began, 3),
        "host_start_s": round(started - began, 3),
        "throughput": round(size / (ended - began), 1),
        "first_k_s": round(seen.first_at - began, 3),
        "first_k_throughput": round(first / (seen.first_at - began), 1),
    }


async def measure(url: str, size: int, first: int, timeout: float) -> dict[str, Any]:
    await fresh_database(url)
    await record_definition(url)
    say(f"size {size}: enqueueing with no host running")
    enqueue_s = await enqueue(url, size)
    say(f"size {size}: enqueued in {enqueue_s:.1f}s ({size / enqueue_s:.0f}/s); draining")
    result = {"enqueue_s": round(enqueue_s, 3), "enqueue_rate": round(size / enqueue_s, 1)}
    result |= await drain(url, size, first, timeout)
    say(
        f"size {size}: drained in {result['drain_s']}s ({result['throughput']}/s), "
        f"first {first} at {result['first_k_throughput']}/s"
    )
    return result


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="base URL: each size gets _p<size>")
    parser.add_argument("--sizes", default="1000,100000", help="backlog sizes, smallest first")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per drain")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    backend = backend_of(args.db)
    first = min(1000, *sizes)
    results: dict[str, dict[str, Any]] = {}
    for size in sizes:
        url = derived_url(args.db, f"_p{size}")
        results[str(size)] = await measure(url, size, first, args.timeout)
        if not args.keep:
            await drop_database(url)
    small, large = results[str(sizes[0])], results[str(sizes[-1])]
    ratio = {
        "drain": round(large["throughput"] / small["throughput"], 3),
        "first_k": round(large["first_k_throughput"] / small["first_k_throughput"], 3),
    }
    say(f"ratio {sizes[-1]}/{sizes[0]}: drain {ratio['drain']}, first {first} {ratio['first_k']}")
    return {
        "workload": "backlog",
        "engine": "wfe",
        "backend": backend,
        "sizes": results,
        "first_k": first,
        "ratio": ratio,
        "ratio_of": [sizes[-1], sizes[0]],
        "target": TARGET,
        "meets_target": min(ratio.values()) >= TARGET,
    }


if __name__ == "__main__":
    run(main)
