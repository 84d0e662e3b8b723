"""A live host must keep its leases while its step commits are slow
(RELIABILITY.md I2: no re-run of a step without a fault; R2(a)/R9(a): zero duplicate
body starts without faults).

The test makes every step commit slow on purpose: a trigger on the pointers table
(which step commits write and lease renewals do not) runs a query of about
:data:`COMMIT_COST` seconds inside each commit's transaction. One commit thus holds
the write lock for a small fraction of the lease, and a lease renewal (one short
UPDATE of the workflows table) could run as soon as the commit in progress is done.
The host has dozens of workflows in flight, so dozens of commits are waiting to write
at once. If the renewal waits behind all of them, the leases run out while the host is
alive and working, and the host's own next claim re-runs steps that were in flight.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from wfe import WorkflowClient, WorkflowStatus

from .checks import tally
from .host_proc import MULTIFLOW_STEPS
from .procs import HostProc, read_history, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(60)]

LEASE = 3.0
POLL = 0.1
WORKFLOWS = 60
COMMIT_COST = 0.1
"""Seconds each step commit spends in the trigger: 60 queued commits take ~6 s, two
leases; one commit in progress takes 1/30 of a lease."""

BALLAST_QUERY = "SELECT count(*) FROM crash_ballast a, crash_ballast b WHERE a.x + b.x >= 0"


def ballast_rows(conn: sqlite3.Connection, seconds: float) -> int:
    """Rows of ballast that make :data:`BALLAST_QUERY` take about ``seconds`` here
    (its cost grows with the square of the rows)."""
    rows = 500
    conn.execute("CREATE TEMP TABLE crash_ballast(x INTEGER)")
    conn.executemany("INSERT INTO crash_ballast VALUES (?)", ((i,) for i in range(rows)))
    started = time.perf_counter()
    conn.execute(BALLAST_QUERY).fetchone()
    took = max(time.perf_counter() - started, 1e-4)
    conn.execute("DROP TABLE crash_ballast")
    return max(int(rows * (seconds / took) ** 0.5), rows)


def slow_down_step_commits(path: str, seconds: float) -> None:
    """Install the trigger that makes each pointer update (each step commit) slow."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        rows = ballast_rows(conn, seconds)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE crash_ballast(x INTEGER)")
        conn.executemany("INSERT INTO crash_ballast VALUES (?)", ((i,) for i in range(rows)))
        conn.execute(
            f"CREATE TRIGGER crash_slow_commit AFTER UPDATE ON wfe_pointers "
            f"BEGIN {BALLAST_QUERY}; END"
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture
def sqlite_path(backend_name: str, db_url: str) -> str:
    if backend_name != "sqlite":
        pytest.skip(
            "the slow-commit trigger is written for SQLite; a Postgres variant "
            "would call pg_sleep in a trigger on wfe_pointers"
        )
    database = make_url(db_url).database
    assert database
    return database


async def test_host_keeps_its_leases_while_its_commits_queue(
    db_url: str,
    sqlite_path: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    host = await HostProc.start(
        "host",
        db=db_url,
        history=history,
        lease=LEASE,
        poll=POLL,
        log_dir=tmp_path,
        registry=host_procs,
    )  # migrates the schema
    slow_down_step_commits(sqlite_path, COMMIT_COST)
    ids = [await client.start_workflow("multiflow", {"n": 0}) for _ in range(WORKFLOWS)]

    async def settled() -> bool:
        if "lease lost" in host.stderr():
            return True  # fail fast: the assertions below say what happened
        return not await client.list_workflows(status=WorkflowStatus.RUNNABLE, limit=1)

    await wait_until(settled, 50, "every workflow finishes (or a lease is lost)", interval=0.2)

    log = host.stderr()
    lost = log.count("lease lost")
    renewals = [line for line in log.splitlines() if "renew took" in line]
    assert lost == 0, (
        f"a live host lost {lost} leases (lease {LEASE:g}s, each step commit ~"
        f"{COMMIT_COST:g}s); its lease renewals waited behind its queued commits:\n"
        + "\n".join(renewals[:10])
    )

    starts = tally(read_history(history), "start")
    rerun = {key: count for key, count in starts.items() if count != 1}
    assert not rerun, f"steps re-run without any fault: {rerun}"
    assert set(starts) == {(wid, step) for wid in ids for step in MULTIFLOW_STEPS}
    for wid in ids:
        inst = await client.get_workflow(wid)
        assert inst.status is WorkflowStatus.COMPLETE, (wid, inst.status, inst.error)
    assert host.alive(), log
