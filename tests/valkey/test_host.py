"""A host and a client on PostgreSQL + Valkey (the URL option): starts travel through
Valkey, and an idle host hears of them through Valkey, with PostgreSQL's LISTEN off and
a poll interval far longer than the test."""

from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel

from wfe import WorkflowBuilder, WorkflowClient, WorkflowHost, WorkflowStatus
from wfe_core.context import StepContext
from wfe_valkey.queue import ValkeyQueue

POLL = 60.0
"""No poll within the test: a start it sees came through Valkey."""


class Count(BaseModel):
    n: int = 0


async def bump(ctx: StepContext) -> None:
    ctx.data.n += 1


FLOW = WorkflowBuilder("valkey-flow", version=1, data=Count).start_with(bump).then(bump).build()


async def test_an_idle_host_runs_a_clients_starts_through_valkey(
    pg_url: str, valkey_url: str
) -> None:
    url = f"{pg_url}?listen=false&valkey={quote(valkey_url, safe='')}"
    async with WorkflowHost.from_url(url, poll_interval=POLL, lease=5) as host:
        host.register(FLOW)
        queue = host.backend.queue
        assert isinstance(queue, ValkeyQueue)
        await queue.listen()
        async with WorkflowClient.from_url(url) as client:
            ids = [await client.start_workflow("valkey-flow", Count()) for _ in range(5)]
            done = [await client.wait_for_completion(wid, timeout=20) for wid in ids]

        assert [(i.status, i.data) for i in done] == [(WorkflowStatus.COMPLETE, {"n": 2})] * 5
        assert queue.counts.streamed == 5
