"""A host and a client on a database + Valkey (the URL option): starts travel through
Valkey, and an idle host hears of them through Valkey (PostgreSQL's LISTEN off, SQLite
has none), with a poll interval far longer than the test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import BaseModel

from wfe import WorkflowBuilder, WorkflowClient, WorkflowHost, WorkflowStatus
from wfe_core.context import StepContext
from wfe_valkey.queue import ValkeyQueue

from .servers import ServerProcess

POLL = 60.0
"""No poll within the test: a start it sees came through Valkey."""


class Count(BaseModel):
    n: int = 0


async def bump(ctx: StepContext) -> None:
    ctx.data.n += 1


FLOW = WorkflowBuilder("valkey-flow", version=1, data=Count).start_with(bump).then(bump).build()


@pytest.fixture(params=["postgres", "sqlite"])
def quiet_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL that hears nothing of other processes by itself, ending in ``&``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/wfe.db?"
    return f"{request.getfixturevalue('pg_url')}?listen=false&"


async def test_an_idle_host_runs_a_clients_starts_through_valkey(
    quiet_store_url: str, valkey_url: str
) -> None:
    url = f"{quiet_store_url}valkey={quote(valkey_url, safe='')}"
    host = WorkflowHost.from_url(url, poll_interval=POLL, lease=5)
    host.register(FLOW)
    async with host:
        queue = host.backend.queue
        assert isinstance(queue, ValkeyQueue)
        await queue.listen()
        async with WorkflowClient.from_url(url) as client:
            # Once one has run, the host has claimed at least once and waits for news.
            first = await client.start_workflow("valkey-flow", Count())
            await client.wait_for_completion(first, timeout=20)
            streamed = queue.counts.streamed
            ids = [await client.start_workflow("valkey-flow", Count()) for _ in range(5)]
            done = [await client.wait_for_completion(wid, timeout=20) for wid in ids]

        assert [(i.status, i.data) for i in done] == [(WorkflowStatus.COMPLETE, {"n": 2})] * 5
        assert queue.counts.streamed - streamed == 5


async def test_a_host_keeps_running_starts_while_valkey_restarts(
    pg_url: str, valkey_server: ServerProcess
) -> None:
    url = f"{pg_url}?valkey={quote(valkey_server.url('restart'), safe='')}"
    host = WorkflowHost.from_url(url, poll_interval=0.2, lease=5)
    host.register(FLOW)
    async with host, WorkflowClient.from_url(url) as client:
        queue = host.backend.queue
        assert isinstance(queue, ValkeyQueue)

        async def run(n: int) -> None:
            ids = [await client.start_workflow("valkey-flow", Count()) for _ in range(n)]
            for wid in ids:
                done = await client.wait_for_completion(wid, timeout=30)
                assert (done.status, done.data) == (WorkflowStatus.COMPLETE, {"n": 2})

        await run(3)
        valkey_server.kill()
        await run(3)  # through the database alone
        valkey_server.start()
        await queue.listen(timeout=10)
        streamed = queue.counts.streamed
        await asyncio.wait_for(run(3), timeout=60)

        assert queue.counts.streamed > streamed, "after the restart, starts use Valkey again"
