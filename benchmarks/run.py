"""wfe vs DBOS Transact, side by side on the same PostgreSQL and SQLite (issue 6).

    .venv/bin/python -m benchmarks.run --results benchmarks/RESULTS.md

Every run is a fresh subprocess on a fresh database; engines alternate within each
repetition (wfe rep 1, DBOS rep 1, wfe rep 2, …) so that drift on the machine hits both.
Prints a markdown table of medians (ratio and issue 6 goal included) and every rep's
value; a run that fails or times out shows as an error with its stderr tail, and makes
the exit status 1. See ``benchmarks/README.md`` for what each workload measures.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.runner import dbos_venv, goals, machine, report, subproc
from benchmarks.runner.databases import Postgres, fresh_sqlite, remove_sqlite, sqlite_path
from benchmarks.runner.report import Record

BENCH = Path(__file__).resolve().parent
DBOS_SCRIPT = "benchmarks/peers/dbos_workloads.py"
DEFAULT_N = {
    "one_step": 2000,
    "three_step": 1000,
    "dag10": 500,
    "latency": 200,
    "xact": 2000,
    "wake": 100,
}
# Extra arguments of the scale scripts: (full run, --quick). They pick their own sizes.
SCALE_ARGS: dict[str, tuple[list[str], list[str]]] = {
    "backlog": ([], ["--sizes", "100,10000"]),
    "multihost": ([], ["--n", "400"]),
    "memory": ([], ["--n", "1000"]),
}


def csv(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {choices}")
        return names

    return parse


def n_override(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if name not in DEFAULT_N or not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected WORKLOAD=N with WORKLOAD in {DEFAULT_N}")
    return name, int(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", type=csv(("postgres", "sqlite")), default="postgres,sqlite")
    p.add_argument("--workloads", type=csv(goals.ALL), default=",".join(goals.ALL))
    p.add_argument("--engines", type=csv(("wfe", "dbos")), default="wfe,dbos")
    p.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="every N / 10: a smoke run")
    p.add_argument("--n", type=n_override, action="append", default=[], metavar="WORKLOAD=N")
    p.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--scale-timeout", type=float, default=7200.0, help="per scale script")
    p.add_argument("--results", type=Path, help="append the results to this markdown file")
    p.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json")
    args = p.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    return args


def record(backend: str, workload: str, engine: str, rep: int, run: subproc.Run) -> Record:
    return Record(backend, workload, engine, rep, run.result, run.error, run.wall_s, run.log)


class Runner:
    def __init__(self, args: argparse.Namespace, pg: Postgres, dbos_python: Path | None):
        self.args = args
        self.pg = pg
        self.dbos_python = dbos_python
        self.records: list[Record] = []
        self.skipped: list[str] = []

    def n(self, workload: str) -> int:
        n: int = dict(self.args.n).get(workload, DEFAULT_N[workload])
        return max(10, n // 10) if self.args.quick and workload not in dict(self.args.n) else n

    def command(
        self, engine: str, workload: str, url: str, n: int, warmup: int | None
    ) -> list[str]:
        head = (
            [sys.executable, "-m", "benchmarks.wfe_workloads"]
            if engine == "wfe"
            else [str(self.dbos_python), DBOS_SCRIPT]
        )
        tail = [] if warmup is None else ["--warmup", str(warmup)]
        return [*head, "--workload", workload, "--db", url, "--n", str(n), *tail]

    async def fresh(self, backend: str, label: str) -> str:
        return await self.pg.fresh() if backend == "postgres" else fresh_sqlite(label)

    def keep(self, record: Record) -> Record:
        self.records.append(record)
        shown = "ERROR " + record.error.splitlines()[0] if record.error else None
        shown = shown or goals.fmt(record.workload, record.value)
        print(
            f"{record.backend} {record.workload} {record.engine} rep {record.rep}: "
            f"{shown} ({record.wall_s:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        return record

    async def side_by_side(self, backend: str, workload: str, engine: str, rep: int) -> None:
        label = f"{backend}-{workload}-{engine}-rep{rep}"
        url = await self.fresh(backend, label)
        command = self.command(engine, workload, url, self.n(workload), None)
        run = await subproc.run(command, label, self.args.timeout)
        if backend == "sqlite":
            remove_sqlite(sqlite_path(url))
        self.keep(record(backend, workload, engine, rep, run))

    async def xact(self, engine: str, rep: int) -> None:
        """Commits and rollbacks per one-step workflow: the counters' growth over a
        run of N minus that of a run of none (start and stop only), over N."""
        n, wall = self.n("xact"), 0.0
        deltas: dict[int, tuple[int, int]] = {}
        logs: list[str] = []
        for count in (n, 0):
            label = f"postgres-xact-{engine}-rep{rep}-n{count}"
            url = await self.pg.fresh()
            before = await self.pg.xact_counts()
            # No warm-up: its transactions would not cancel out of the N=0 run.
            run = await subproc.run(
                self.command(engine, "one_step", url, count, 0), label, self.args.timeout
            )
            wall, logs = wall + run.wall_s, [*logs, run.log]
            if run.error:
                self.keep(Record("postgres", "xact", engine, rep, None, run.error, wall, run.log))
                return
            after = await self.pg.settled_xact_counts()
            deltas[count] = (after[0] - before[0], after[1] - before[1])
        result = {
            "n": n,
            "commits_per_workflow": (deltas[n][0] - deltas[0][0]) / n,
            "rollbacks_per_workflow": (deltas[n][1] - deltas[0][1]) / n,
            "delta_n": deltas[n],
            "delta_0": deltas[0],
        }
        self.keep(Record("postgres", "xact", engine, rep, result, None, wall, " ".join(logs)))

    async def wake(self, rep: int) -> None:
        url = await self.pg.fresh()
        command = [sys.executable, "-m", "benchmarks.wake_latency", "--db", url, "--json"]
        command += ["--n", str(self.n("wake"))]
        run = await subproc.run(command, f"postgres-wake-wfe-rep{rep}", self.args.timeout)
        self.keep(record("postgres", "wake", "wfe", rep, run))

    async def scale(self, backend: str, name: str) -> None:
        if not (BENCH / "scale" / f"{name}.py").exists():
            print(f"{backend} {name}: skipped: not present", file=sys.stderr, flush=True)
            self.skipped.append(f"{backend} {name}: skipped: not present")
            return
        label = f"{backend}-{name}"
        # A base URL: the scripts derive (and drop) their own databases from it.
        if backend == "postgres":
            url = await self.pg.fresh("wfe_bench_scale")
        else:
            url = fresh_sqlite(f"scale-{name}")
        full, quick = SCALE_ARGS[name]
        command = [sys.executable, "-m", f"benchmarks.scale.{name}", "--db", url]
        command += quick if self.args.quick else full
        run = await subproc.run(command, label, self.args.scale_timeout)
        if backend == "postgres":
            await self.pg.drop("wfe_bench_scale")
        else:
            remove_sqlite(sqlite_path(url))
        self.keep(record(backend, name, "wfe", 1, run))

    async def backend(self, backend: str) -> None:
        engines = self.args.engines
        for workload in self.args.workloads:
            if workload in goals.POSTGRES_ONLY and backend != "postgres":
                continue
            if workload in goals.SCALE:
                await self.scale(backend, workload)
                continue
            for rep in range(1, self.args.reps + 1):
                if workload == "wake":
                    await self.wake(rep)
                    continue
                for engine in engines:
                    if workload == "xact":
                        await self.xact(engine, rep)
                    else:
                        await self.side_by_side(backend, workload, engine, rep)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    needs_dbos = "dbos" in args.engines and any(
        w in (*goals.SIDE_BY_SIDE, "xact") for w in args.workloads
    )
    dbos_python = dbos_venv.ensure() if needs_dbos else None
    pg = Postgres(args.pg)
    runner = Runner(args, pg, dbos_python)
    try:
        for backend in args.backends:
            await runner.backend(backend)
        pg_version = await pg.server_version() if "postgres" in args.backends else None
        if "postgres" in args.backends:
            await pg.drop()
    finally:
        await pg.close()
    text = report.render(runner.records)
    if runner.skipped:
        text += "\n\nSkipped:\n" + "\n".join(f"- {s}" for s in runner.skipped)
    print(text)
    if args.results:
        info = machine.describe(pg_version, dbos_venv.installed_version() if needs_dbos else None)
        command = shlex.join([".venv/bin/python", "-m", "benchmarks.run", *sys.argv[1:]])
        report.write_results(args.results, args.json, runner.records, info, command, text)
        print(f"\nwrote {args.results} and {args.json}", file=sys.stderr)
    return 1 if any(r.error for r in runner.records) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
