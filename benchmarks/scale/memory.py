"""Host memory with 10,000 workflows waiting for events (issue 6): RSS < 150 MB, because
waiting work lives in the database, not in the host.

    .venv/bin/python -m benchmarks.scale.memory --db postgresql://postgres@127.0.0.1:5432/wfe_bench_scale_mem

One host process (this script with ``--serve``, default options) runs a definition
whose first step waits for the event ("go", its own key), then a trivial step. This
process starts N of them with a ``WorkflowClient``, waits until every one is waiting,
samples the host's VmRSS/VmHWM, again after some idle seconds, then publishes the N
events and samples once more when all are complete. Uses the database it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from pydantic import BaseModel

from benchmarks.scale.common import (
    CHUNK,
    BenchError,
    HostProcess,
    backend_of,
    host_processes,
    memory_of,
    run,
    say,
    serve,
    sql_rows,
    start_many,
    verify_all_complete,
    wait_until,
)
from wfe import StepContext, WorkflowBuilder, WorkflowClient, WorkflowHost
from wfe.events import LifecycleEvent, StepStarted, WorkflowCompleted, WorkflowFailed

MODULE = "benchmarks.scale.memory"
LIMIT_MB = 150.0
WAIT = "wait"


class Keyed(BaseModel):
    key: str = ""


async def noop(ctx: StepContext[Keyed]) -> None:
    return None


FLOW = (
    WorkflowBuilder("scale_memory", version=1, data=Keyed)
    .wait_for("go", key=lambda ctx: ctx.data.key, name=WAIT)
    .then(noop)
    .build()
)


async def serve_host(url: str) -> None:
    # Counters only: a per-workflow record would itself be the memory we measure.
    counts = {"waits": 0, "completed": 0, "failed": 0}

    def count(event: LifecycleEvent) -> None:
        if isinstance(event, StepStarted) and event.step_name == WAIT:
            counts["waits"] += 1  # before the events are published: one per workflow
        elif isinstance(event, WorkflowCompleted):
            counts["completed"] += 1
        elif isinstance(event, WorkflowFailed):
            counts["failed"] += 1

    host = WorkflowHost.from_url(url)
    host.register(FLOW)
    host.subscribe(count)
    await serve(host, lambda: dict(counts))


async def confirm_waiting(url: str, client: WorkflowClient, ids: list[str], n: int) -> None:
    """The host saw every wait begin; the last ones commit just after: until the store
    holds N subscriptions (read-only count), then a sample through the public API."""
    deadline = time.monotonic() + 60
    while (found := (await sql_rows(url, "SELECT count(*) FROM wfe_subscriptions"))[0][0]) < n:
        if time.monotonic() > deadline:
            raise BenchError(f"only {found} of {n} waits were stored within 60s")
        await asyncio.sleep(0.5)
    for wid in random.sample(ids, min(10, n)):
        steps = await client.get_steps(wid)
        if steps[0].status != "WAITING":
            raise BenchError(f"workflow {wid} is not waiting: {steps}")


async def publish_all(client: WorkflowClient, keys: list[str]) -> None:
    last = time.monotonic()
    for at in range(0, len(keys), CHUNK):
        await asyncio.gather(*(client.publish_event("go", k) for k in keys[at : at + CHUNK]))
        if time.monotonic() - last > 5:
            say(f"  published {min(at + CHUNK, len(keys))}/{len(keys)} events")
            last = time.monotonic()


def sample(pid: int, label: str) -> tuple[float, float]:
    rss, hwm = memory_of(pid)
    say(f"host RSS {label}: {rss:.1f} MB (peak {hwm:.1f} MB)")
    return round(rss, 1), round(hwm, 1)


async def measure(url: str, n: int, idle: float, timeout: float) -> dict[str, Any]:
    host = HostProcess(MODULE, ["--db", url])
    keys = [f"key-{i}" for i in range(n)]
    async with host_processes([host]):
        await host.start()
        await host.wait_ready(120)
        rss_ready, _ = sample(host.pid, "ready")
        status = lambda: str(host.progress)  # noqa: E731
        async with WorkflowClient.from_url(url) as client:
            began = time.monotonic()
            ids = await start_many(client, FLOW.id, (Keyed(key=k) for k in keys))
            say(f"started {n} in {time.monotonic() - began:.1f}s; waiting for their waits")
            waits = lambda: host.progress.get("waits", 0) >= n  # noqa: E731
            await wait_until(waits, timeout, f"{n} waits", status, [host])
            await confirm_waiting(url, client, ids, n)
            waiting_s = time.monotonic() - began
            rss_waiting, hwm_waiting = sample(host.pid, f"with {n} waiting")
            await asyncio.sleep(idle)
            rss_idle, _ = sample(host.pid, f"after {idle:g}s idle")
            began = time.monotonic()
            await publish_all(client, keys)
            done = lambda: host.progress.get("completed", 0) >= n  # noqa: E731
            await wait_until(done, timeout, f"{n} completions", status, [host])
            complete_s = time.monotonic() - began
            rss_done, hwm_done = sample(host.pid, "after completion")
            await verify_all_complete(url, client, n)
        await host.stop()
    return {
        "rss_ready_mb": rss_ready,
        "rss_waiting_mb": rss_waiting,
        "hwm_waiting_mb": hwm_waiting,
        "rss_idle_mb": rss_idle,
        "rss_completed_mb": rss_done,
        "hwm_completed_mb": hwm_done,
        "to_waiting_s": round(waiting_s, 3),
        "to_complete_s": round(complete_s, 3),
    }


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="a fresh database (used as given)")
    parser.add_argument("--n", type=int, default=10000, help="waiting workflows")
    parser.add_argument("--idle", type=float, default=5.0, help="idle seconds before resampling")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per phase")
    args = parser.parse_args()
    backend = backend_of(args.db)
    result = await measure(args.db, args.n, args.idle, args.timeout)
    waiting = max(result["rss_waiting_mb"], result["rss_idle_mb"])
    return {
        "workload": "memory",
        "engine": "wfe",
        "backend": backend,
        "n": args.n,
        **result,
        "limit_mb": LIMIT_MB,
        "meets_target": waiting < LIMIT_MB,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--db")
    known, _ = parser.parse_known_args()
    if known.serve:
        asyncio.run(serve_host(known.db))
    else:
        run(main)
