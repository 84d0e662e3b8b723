"""Kill -9 in the middle of a sequential for_each: another host resumes at the item
that was running; the items whose visits had committed are not visited again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from wfe import WorkflowClient, WorkflowStatus

from .checks import tally
from .procs import HostProc, host_starter, kill9, read_history, wait_until

pytestmark = [pytest.mark.multiproc, pytest.mark.timeout(60)]

LEASE = 1.0
POLL = 0.1


async def test_kill9_mid_for_each_resumes_at_the_running_item(
    db_url: str,
    history: Path,
    tmp_path: Path,
    host_procs: list[HostProc],
    client: WorkflowClient,
) -> None:
    start = host_starter(db_url, history, tmp_path, host_procs, lease=LEASE, poll=POLL)
    a = await start("host-a", "--hold-item", "3")
    wid = await client.start_workflow("eachflow", {"items": [1, 2, 3, 4]})

    def item3_started() -> bool:
        return any(r["step"] == "visit:3" for r in read_history(history))

    await wait_until(item3_started, 20, "item 3 starts on host A")
    kill9(a)
    stored = await client.get_workflow(wid)
    assert stored.data["visited"] == {"1": 10, "2": 20}  # committed before the kill

    started = time.monotonic()
    b = await start("host-b")
    done = await client.wait_for_completion(wid, 30)
    assert done.status is WorkflowStatus.COMPLETE, done.error
    assert done.data == {
        "items": [1, 2, 3, 4],
        "after": 1,
        "visited": {"1": 10, "2": 20, "3": 30, "4": 40},
    }
    starts = tally(read_history(history), "start")
    visits = {step: n for (_, step), n in starts.items()}
    assert visits == {"visit:1": 1, "visit:2": 1, "visit:3": 2, "visit:4": 1}
    assert time.monotonic() - started < 30
    assert b.alive(), b.stderr()
