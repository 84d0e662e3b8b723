"""Enqueue-to-start latency on an idle host, NOTIFY on vs off (issue 3; SPEC §5).

A host runs in its own process, idle. This process is a ``WorkflowClient``: it starts one
workflow at a time and reads back the wall-clock time at which the step began (both
processes share this machine's clock). Latency = step start - the moment just before
``start_workflow`` was called (so it includes the enqueue commit: an upper bound).

    .venv/bin/python -m benchmarks.wake_latency --db postgresql://postgres@127.0.0.1/wfe_bench

Runs two configurations: NOTIFY on (LISTEN connection, poll 60 s: every wake-up must
come from NOTIFY) and NOTIFY off (``?listen=false``, poll 1 s: the fallback). With
``--json`` (how ``benchmarks.run`` calls it) only NOTIFY on runs, and the last line of
stdout is the benchmarks' JSON protocol line instead of the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from wfe import WorkflowClient

CONFIGS = [("notify on (poll 60 s)", "", 60.0), ("notify off (poll 1 s)", "listen=false", 1.0)]


def with_query(url: str, query: str) -> str:
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def measure(url: str, query: str, poll: float, n: int, gap: float) -> list[float]:
    host = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.wake_host",
        "--db",
        with_query(url, query),
        "--poll",
        str(poll),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert host.stdout is not None
        if (await host.stdout.readline()).decode().strip() != "READY":
            raise RuntimeError("the benchmark host did not start")
        latencies = []
        async with WorkflowClient.from_url(url) as client:
            for _ in range(n):
                await asyncio.sleep(gap)  # let the host go idle again
                before = time.time_ns()
                wid = await client.start_workflow("wake", {})
                done = await client.wait_for_completion(wid, timeout=max(10.0, poll * 3))
                latencies.append((done.data["started_ns"] - before) / 1e6)
        return latencies
    finally:
        host.terminate()
        await host.wait()


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50_ms": round(statistics.median(values), 3),
        "p90_ms": round(values[min(len(values) - 1, int(0.9 * len(values)))], 3),
        "max_ms": round(values[-1], 3),
    }


def summary(values: list[float]) -> str:
    p = percentiles(values)
    return (
        f"p50 {p['p50_ms']:7.2f} ms  p90 {p['p90_ms']:7.2f} ms  "
        f"max {p['max_ms']:7.2f} ms  (n={len(values)})"
    )


def protocol_line(n: int, values: list[float]) -> str:
    result = {"workload": "wake", "engine": "wfe", "backend": "postgres", "n": n}
    return json.dumps(result | percentiles(values) | {"config": CONFIGS[0][0]})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database URL (PostgreSQL for NOTIFY)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.05, help="idle seconds between runs")
    parser.add_argument("--json", action="store_true", help="NOTIFY on only; a JSON line")
    args = parser.parse_args()
    if args.json:
        _, query, poll = CONFIGS[0]
        print(protocol_line(args.n, await measure(args.db, query, poll, args.n, args.gap)))
        return
    for label, query, poll in CONFIGS:
        latencies = await measure(args.db, query, poll, args.n, args.gap)
        print(f"{label:24s} {summary(latencies)}")


if __name__ == "__main__":
    asyncio.run(main())
