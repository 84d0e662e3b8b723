"""A bounded chaos loop: SIGKILL random hosts, and on stores with server connections
terminate random backends, while workflows run (RELIABILITY.md R1/R4 with small N).

At the end: every workflow is COMPLETE with exactly the data its steps produce, each
step has one COMPLETE pointer (exactly-once transitions, I1), no step started again
after its commit landed, and nothing is stuck.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .checks import assert_one_complete_pointer_per_step, tally
from .host_proc import MULTIFLOW_STEPS
from .procs import HostProc, kill9, read_history, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.chaos, pytest.mark.timeout(90)]

HOSTS = 3
WORKFLOWS = 120
CHAOS_SECONDS = 15.0
LEASE = 2.0
POLL = 0.1
STEP_DELAY = 0.5
SEED = int(os.environ.get("WFE_CHAOS_SEED", "0")) or random.randrange(1, 1 << 30)


async def terminate_random_backends(db_url: str, rng: random.Random) -> int:
    """On PostgreSQL, kill about half of the other connections to the test database."""
    if not db_url.startswith("postgres"):
        return 0
    import asyncpg

    dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        pids = [
            r["pid"]
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]
        victims = [pid for pid in pids if rng.random() < 0.5]
        for pid in victims:
            await conn.execute("SELECT pg_terminate_backend($1)", pid)
        return len(victims)
    finally:
        await conn.close()


async def test_chaos_kills_lose_nothing_and_double_nothing(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    rng = random.Random(SEED)
    print(f"WFE_CHAOS_SEED={SEED}")

    async def spawn(i: int) -> HostProc:
        return await HostProc.start(
            f"host-{i}-{time.monotonic_ns()}",
            db=db_url,
            history=history,
            lease=LEASE,
            poll=POLL,
            log_dir=tmp_path,
            registry=host_procs,
            extra=["--step-delay", str(STEP_DELAY)],
        )

    hosts = list(await asyncio.gather(*(spawn(i) for i in range(HOSTS))))
    ids: list[str] = []
    kills = terminations = 0
    deadline = time.monotonic() + CHAOS_SECONDS
    # Time-bounded, but never with too little work: on a loaded machine a restart of a
    # host takes seconds, and the window alone would hold only a few rounds.
    while time.monotonic() < deadline or len(ids) < WORKFLOWS // 2:
        # A steady stream of work, so every kill lands on steps in flight.
        for _ in range(WORKFLOWS // 12):
            ids.append(await client.start_workflow("multiflow", {"n": 0}))
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        victim = rng.randrange(HOSTS)
        kill9(hosts[victim])
        kills += 1
        terminations += await terminate_random_backends(db_url, rng)
        hosts[victim] = await spawn(victim)

    async def all_finished() -> bool:
        pending = await client.list_workflows(status=WorkflowStatus.RUNNABLE, limit=1)
        return not pending

    # Liveness bound: lease + poll + slack after the last fault (RELIABILITY I5).
    await wait_until(all_finished, LEASE + POLL + 30, "every workflow finishes after the chaos")
    for wid in ids:
        inst = await client.get_workflow(wid)
        assert inst.status is WorkflowStatus.COMPLETE, (SEED, wid, inst.status, inst.error)
        assert inst.data == {"n": len(MULTIFLOW_STEPS)}, (SEED, wid, inst.data)
        await assert_one_complete_pointer_per_step(client, wid, MULTIFLOW_STEPS)

    records = read_history(history)
    committed: set[tuple[str, str]] = set()
    for record in records:
        key = (record["wf"], record["step"])
        if record["event"] == "committed":
            committed.add(key)
        elif record["event"] == "start" and key in committed:
            raise AssertionError(f"seed {SEED}: {key} started again after its commit landed")
    starts = tally(records, "start")
    assert set(starts) == {(w, s) for w in ids for s in MULTIFLOW_STEPS}
    reruns = sum(n - 1 for n in starts.values())
    print(f"kills={kills} terminated_backends={terminations} body_reruns={reruns}")
    assert kills > 0 and len(ids) >= WORKFLOWS // 2
