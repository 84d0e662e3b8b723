"""The side-by-side workloads on DBOS Transact (``dbos==3.4.0``), the peer wfe is
measured against (issue 6). Run by the python of ``benchmarks/.venv-dbos``, which has
dbos and nothing of wfe:

    benchmarks/.venv-dbos/bin/python benchmarks/peers/dbos_workloads.py \
        --workload one_step --db postgresql://postgres@127.0.0.1/wfe_bench_run --n 2000

DBOS is used as its documentation shows: a ``DBOS(config=…)`` whose
``system_database_url`` is the PostgreSQL (psycopg driver, chosen by DBOS) or SQLite
database, ``DBOS.launch()``, async ``@DBOS.step()`` bodies and ``@DBOS.workflow()``
functions, ``DBOS.start_workflow_async`` and ``handle.get_result()``.
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version
from pathlib import Path

# harness.py sits next to this file and is stdlib only; a script's own folder is on
# sys.path, so this works from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dbos import DBOS, DBOSConfig
from harness import Engine, emit, parse_args, run


@DBOS.step()
async def add_one(x: int) -> int:
    return x + 1


@DBOS.workflow()
async def one_step(x: int) -> int:
    return await add_one(x)


@DBOS.workflow()
async def three_step(x: int) -> int:
    x = await add_one(x)
    x = await add_one(x)
    return await add_one(x)


@DBOS.workflow()
async def dag10(x: int) -> int:
    # Ten independent steps at once: DBOS's counterpart of a DAG with no edges.
    return sum(await asyncio.gather(*(add_one(x + i) for i in range(10))))


WORKFLOWS = {"one_step": (one_step, 1), "three_step": (three_step, 3), "dag10": (dag10, 55)}


def open_engine(url: str) -> Engine:
    config: DBOSConfig = {
        "name": "wfe-bench",
        "system_database_url": url,
        # INFO logs a few lines at launch and exit only; WARNING keeps stdout clean for
        # the protocol line without changing what a workflow does.
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()

    async def start(workload: str):
        workflow, expected = WORKFLOWS[workload]
        return await DBOS.start_workflow_async(workflow, 0), expected

    async def finish(started) -> None:
        handle, expected = started
        result = await handle.get_result()
        if result != expected:
            raise AssertionError(f"workflow {handle.workflow_id} returned {result!r}")

    async def close() -> None:
        DBOS.destroy()

    return Engine("dbos", start, finish, close)


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    engine = open_engine(args.db)
    result = await run(engine, args)
    result["dbos_version"] = version("dbos")
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
