"""1, 2 and 4 host processes on one PostgreSQL (issue 6): no workflow lost, none run
twice, and no claim conflicts or lease losses logged.

    .venv/bin/python -m benchmarks.scale.multihost --db postgresql://postgres@127.0.0.1:5432/wfe_bench_scale

For each host count H (its own database: ``_h<H>`` appended to the name), H host
processes (this script with ``--serve``, default options, INFO logs to a file each) run
while this process enqueues N one-step workflows with a ``WorkflowClient`` and waits
for all to complete. Every step body records its workflow id; on SIGTERM a host stops
gracefully and writes what it ran, so a workflow executed twice is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from benchmarks.scale.common import (
    BenchError,
    HostProcess,
    backend_of,
    derived_url,
    drop_database,
    fresh_database,
    host_processes,
    run,
    say,
    serve,
    start_many,
    verify_all_complete,
    wait_until,
)
from wfe import StepContext, WorkflowBuilder, WorkflowClient, WorkflowHost
from wfe.events import LifecycleEvent, WorkflowCompleted, WorkflowFailed

MODULE = "benchmarks.scale.multihost"
ISSUE = re.compile(r"lease|claim|renew|fenc", re.IGNORECASE)
"""What a WARNING/ERROR line must mention to count as a claim conflict or lease loss."""
WARNING_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")


class Item(BaseModel):
    i: int = 0


EXECUTED: list[str] = []  # host side: the workflow ids whose body ran here, in order


async def record(ctx: StepContext[Item]) -> None:
    EXECUTED.append(ctx.workflow_id)


FLOW = WorkflowBuilder("scale_multihost", version=1, data=Item).start_with(record).build()


# -- host side ---------------------------------------------------------------------------


async def serve_host(url: str, out: Path, log_file: Path) -> None:
    logging.basicConfig(
        filename=log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    counts = {"completed": 0, "failed": 0, "last_at": 0.0}

    def count(event: LifecycleEvent) -> None:
        if isinstance(event, WorkflowCompleted):
            counts["completed"] += 1
            counts["last_at"] = time.time()  # wall clock: the parent shares this machine's
        elif isinstance(event, WorkflowFailed):
            counts["failed"] += 1

    host = WorkflowHost.from_url(url)
    host.register(FLOW)
    host.subscribe(count)
    await serve(host, lambda: {**counts, "executed": len(EXECUTED)})
    report = json.dumps({"host_id": host.host_id, **counts, "executed": EXECUTED})
    await asyncio.to_thread(out.write_text, report)


# -- parent side -------------------------------------------------------------------------


def log_problems(logs: list[Path]) -> tuple[int, list[str]]:
    """(WARNING/ERROR lines in all logs, those about claims or leases)."""
    warnings = [
        f"{log.name}: {line}"
        for log in logs
        for line in log.read_text().splitlines()
        if WARNING_LINE.match(line)
    ]
    return len(warnings), [w for w in warnings if ISSUE.search(w)]


async def start_hosts(procs: list[HostProcess]) -> None:
    # The first host migrates the fresh database alone; the others find it ready.
    await procs[0].start()
    await procs[0].wait_ready(120)
    await asyncio.gather(*(p.start() for p in procs[1:]))
    await asyncio.gather(*(p.wait_ready(120) for p in procs[1:]))


async def measure(url: str, hosts: int, n: int, timeout: float, log_dir: Path) -> dict[str, Any]:
    await fresh_database(url)
    files = [(log_dir / f"h{hosts}_{i}.json", log_dir / f"h{hosts}_{i}.log") for i in range(hosts)]
    procs = [
        HostProcess(MODULE, ["--db", url, "--out", str(out), "--log", str(log)])
        for out, log in files
    ]

    def completed() -> int:
        return sum(p.progress.get("completed", 0) for p in procs)

    async with host_processes(procs):
        await start_hosts(procs)
        say(f"{hosts} hosts: ready; enqueueing {n}")
        async with WorkflowClient.from_url(url) as client:
            began = time.time()
            await start_many(client, FLOW.id, (Item(i=i) for i in range(n)))
            enqueue_s = time.time() - began
            await wait_until(
                lambda: completed() >= n,
                timeout,
                f"{n} completions on {hosts} hosts",
                lambda: f"{completed()}/{n} completed",
                procs,
            )
            wall = max(p.progress.get("last_at", 0.0) for p in procs) - began
            await verify_all_complete(url, client, n)
        for p in procs:
            await p.stop()
    reports = [json.loads(out.read_text()) for out, _ in files]
    runs = Counter(wid for r in reports for wid in r["executed"])
    warnings, issues = log_problems([log for _, log in files])
    for line in issues:
        say(f"  {line}")
    result = {
        "wall_s": round(wall, 3),
        "enqueue_s": round(enqueue_s, 3),
        # The client enqueues at a bounded rate: what the hosts took past its last start.
        "after_enqueue_s": round(wall - enqueue_s, 3),
        "throughput": round(n / wall, 1),
        "completed": sum(r["completed"] for r in reports),
        "per_host_completed": [r["completed"] for r in reports],
        "executions": runs.total(),
        "duplicates": runs.total() - len(runs),
        "never_executed": n - len(runs),
        "log_warnings": warnings,
        "lease_claim_issues": len(issues),
    }
    say(f"{hosts} hosts: {json.dumps(result)}")
    return result


def problems(hosts: int, r: dict[str, Any]) -> list[str]:
    """What makes the run invalid: a lost workflow, or a body run twice with no lease
    lost to explain it (that would break "one host at a time", SPEC §4.3)."""
    errors = []
    if r["never_executed"]:
        errors.append(f"{hosts} hosts: {r['never_executed']} workflows never executed")
    if r["duplicates"] and not r["lease_claim_issues"]:
        errors.append(f"{hosts} hosts: {r['duplicates']} duplicate executions, no lease lost")
    return errors


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="base URL: each host count gets _h<H>")
    parser.add_argument("--hosts", default="1,2,4", help="host process counts")
    parser.add_argument("--n", type=int, default=4000, help="workflows per host count")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to complete")
    parser.add_argument("--log-dir", type=Path, help="host logs (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args()
    if backend_of(args.db) != "postgres":
        raise BenchError(
            "multihost runs on PostgreSQL only (SQLite multi-process is not its target)"
        )
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="wfe-scale-multihost-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    say(f"host logs in {log_dir}")
    results, errors = {}, []
    for hosts in [int(h) for h in args.hosts.split(",")]:
        url = derived_url(args.db, f"_h{hosts}")
        results[str(hosts)] = await measure(url, hosts, args.n, args.timeout, log_dir)
        errors += problems(hosts, results[str(hosts)])
        if not args.keep:
            await drop_database(url)
    clean = all(
        r["duplicates"] == 0 and r["lease_claim_issues"] == 0 and r["completed"] == args.n
        for r in results.values()
    )
    return {
        "workload": "multihost",
        "engine": "wfe",
        "backend": "postgres",
        "n": args.n,
        "hosts": results,
        "log_dir": str(log_dir),
        "meets_target": clean,
        "errors": errors,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--db")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--log", type=Path)
    known, _ = parser.parse_known_args()
    if known.serve:
        asyncio.run(serve_host(known.db, known.out, known.log))
    else:
        run(main)
