"""The engine-neutral half of the side-by-side workloads (stdlib only).

``benchmarks/wfe_workloads.py`` and ``benchmarks/peers/dbos_workloads.py`` each wrap
their engine in an :class:`Engine` and hand it to :func:`main`, so both are timed by the
same code: the same warm-up, the same clock, the same percentiles, the same output line.
This module is imported by the DBOS venv's python too, hence stdlib only.

Output protocol: the last line of stdout is one JSON object (``emit``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

WORKLOADS = ("one_step", "three_step", "dag10", "latency")


@dataclass
class Engine:
    """One engine, started and ready: ``start(workload)`` starts one workflow of that
    workload and returns a handle; ``finish(handle)`` waits for it and checks it
    completed; ``close()`` shuts the engine down."""

    name: str
    start: Callable[[str], Awaitable[Any]]
    finish: Callable[[Any], Awaitable[None]]
    close: Callable[[], Awaitable[None]]


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--db", required=True, help="sqlite:///path or postgresql://…/db")
    parser.add_argument("--n", type=int, required=True, help="workflows (latency: runs)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed workflows first")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: the value of a real run)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def throughput(engine: Engine, workload: str, n: int) -> float:
    """Seconds from the first start to the last result: all N started at once, then
    every result awaited (concurrently, as a caller awaiting many results would)."""
    began = time.perf_counter()
    handles = await asyncio.gather(*(engine.start(workload) for _ in range(n)))
    await asyncio.gather(*(engine.finish(h) for h in handles))
    return time.perf_counter() - began


async def latencies(engine: Engine, n: int) -> list[float]:
    """Milliseconds from start to result of one-step workflows run one at a time."""
    values = []
    for _ in range(n):
        began = time.perf_counter()
        await engine.finish(await engine.start("one_step"))
        values.append((time.perf_counter() - began) * 1000)
    return values


async def measure(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    workload = "one_step" if args.workload == "latency" else args.workload
    if args.warmup:
        await throughput(engine, workload, args.warmup)
    result: dict[str, Any] = {
        "workload": args.workload,
        "engine": engine.name,
        "backend": backend_of(args.db),
        "n": args.n,
    }
    if args.workload == "latency":
        values = await latencies(engine, args.n)
        result["seconds"] = round(sum(values) / 1000, 4)
        result["p50_ms"] = round(percentile(values, 0.5), 3)
        result["p90_ms"] = round(percentile(values, 0.9), 3)
        result["max_ms"] = round(max(values), 3)
    else:
        seconds = await throughput(engine, workload, args.n)
        result["seconds"] = round(seconds, 4)
        result["per_second"] = round(args.n / seconds, 1) if args.n else None
    return result


def emit(result: dict[str, Any]) -> None:
    """The protocol line: the last line of stdout, one JSON object."""
    print(json.dumps(result), flush=True)


async def run(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    try:
        return await measure(engine, args)
    finally:
        await engine.close()
