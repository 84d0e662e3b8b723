"""The Valkey queue against a real server: starts travel through the ready streams,
entries are acknowledged once their workflow is leased in the store, a reader killed
before acknowledging loses nothing, and a restarted or paused server costs no work.

The store under the queue is the in-memory one here (leases, tokens and the poll are
the store's); the contract suite runs the queue over PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from wfe_core.models import WorkflowRecord
from wfe_core.ports.backend import Backend
from wfe_core.testing import memory_backend
from wfe_core.testing.memory.queue import MemoryQueue
from wfe_valkey.connection import connect
from wfe_valkey.queue import PATIENCE, ValkeyQueue
from wfe_valkey.streams import GROUP
from wfe_valkey.url import parse_url

from ..contract.support import ELIGIBLE, LONG_LEASE, create
from .servers import ServerProcess

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Rig:
    queue: ValkeyQueue
    backend: Backend
    """The in-memory store whose queue the Valkey queue leases through."""

    async def start(self, n: int) -> list[WorkflowRecord]:
        """``n`` workflows stored and enqueued, as a client starts them."""
        records = [await create(self.backend) for _ in range(n)]
        for record in records:
            await self.queue.enqueue(record)
        return records

    async def stream(self) -> tuple[int, int]:
        """(entries in the definition's stream, entries read but not acknowledged)."""
        client = self.queue.streams.client
        stream = self.queue.streams.stream(*ELIGIBLE[0])
        groups = await client.xinfo_groups(stream) if await client.exists(stream) else []
        pending = sum(int(g["pending"]) for g in groups if g["name"] == GROUP.encode())
        return int(await client.xlen(stream)), pending


@asynccontextmanager
async def rig(url: str, **options: float) -> AsyncIterator[Rig]:
    """A Valkey queue on ``url`` over a fresh in-memory store."""
    where = parse_url(url)
    client = connect(where)
    backend = memory_backend()
    assert isinstance(backend.queue, MemoryQueue)
    queue = ValkeyQueue(client, where.prefix, backend.queue, **options)  # type: ignore[arg-type]
    try:
        yield Rig(queue, backend)
    finally:
        await queue.close()
        await client.aclose()


async def test_starts_are_claimed_through_the_stream_once_and_acknowledged(valkey_url: str) -> None:
    async with rig(valkey_url) as r:
        records = await r.start(5)
        assert await r.stream() == (5, 0)

        first = await r.queue.claim("host-a", 3, LONG_LEASE, ELIGIBLE)
        second = await r.queue.claim("host-b", 10, LONG_LEASE, ELIGIBLE)

        claimed = [c.workflow_id for c in first + second]
        assert sorted(claimed) == sorted(rec.id for rec in records)
        assert len(first) == 3
        assert await r.stream() == (0, 0)
        for claim in first + second:
            stored = await r.backend.persistence.get_workflow(claim.workflow_id)
            assert (stored.lease_owner, stored.lease_token) == (claim.owner, claim.token)


async def test_a_stale_entry_is_dropped_and_the_store_is_still_polled(valkey_url: str) -> None:
    async with rig(valkey_url) as r:
        [record] = await r.start(1)
        [held] = await r.backend.queue.claim("host-a", 1, LONG_LEASE, ELIGIBLE)  # not via Valkey
        unannounced = await create(r.backend)

        claims = await r.queue.claim("host-b", 10, LONG_LEASE, ELIGIBLE)

        assert held.workflow_id == record.id
        assert [c.workflow_id for c in claims] == [unannounced.id]
        assert await r.stream() == (0, 0)


async def test_an_enqueue_wakes_a_host_waiting_in_another_process(valkey_url: str) -> None:
    async with rig(valkey_url) as waiting, rig(valkey_url) as starting:
        await waiting.queue.listen()
        waiter = asyncio.create_task(waiting.queue.wait_for_work(60))
        await asyncio.sleep(0.05)
        assert not waiter.done()

        await starting.start(1)

        await asyncio.wait_for(waiter, timeout=10)


_DOOMED_READER = textwrap.dedent(
    """
    import asyncio, sys
    from wfe_valkey.connection import connect
    from wfe_valkey.streams import ReadyStreams
    from wfe_valkey.url import parse_url

    async def main():
        where = parse_url(sys.argv[1])
        streams = ReadyStreams(connect(where), where.prefix)
        entries = await streams.read("doomed-host", 100, [(sys.argv[2], int(sys.argv[3]))])
        print(len(entries), flush=True)
        await asyncio.sleep(3600)  # killed here: read, never acknowledged

    asyncio.run(main())
    """
)


async def test_entries_of_a_reader_killed_before_acknowledging_are_reclaimed(
    valkey_url: str,
) -> None:
    async with rig(valkey_url, reclaim_after_ms=300) as r:
        records = await r.start(4)
        definition, version = ELIGIBLE[0]
        reader = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _DOOMED_READER,
            valkey_url,
            definition,
            str(version),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert reader.stdout is not None
            line = await asyncio.wait_for(reader.stdout.readline(), 30)
            assert line.strip() == b"4"
        finally:
            reader.send_signal(signal.SIGKILL)
            await reader.wait()
        assert await r.stream() == (4, 4)

        await asyncio.sleep(0.4)
        claims = await r.queue.claim("host-a", 10, LONG_LEASE, ELIGIBLE)

        assert sorted(c.workflow_id for c in claims) == sorted(rec.id for rec in records)
        # Acknowledged: read again from the dead reader, not found by the store's poll.
        assert await r.stream() == (0, 0)


async def test_queued_starts_survive_a_server_crash_and_the_client_reconnects(
    valkey_server: ServerProcess,
) -> None:
    async with rig(valkey_server.url("crash")) as r:
        records = await r.start(3)
        assert await r.stream() == (3, 0)

        valkey_server.kill()
        valkey_server.start()  # from its append-only file
        assert await r.stream() == (3, 0)
        claims = await r.queue.claim("host-a", 10, LONG_LEASE, ELIGIBLE)

        assert sorted(c.workflow_id for c in claims) == sorted(rec.id for rec in records)
        assert await r.stream() == (0, 0)


async def test_without_its_server_the_queue_leaves_starts_to_the_stores_poll(
    valkey_server: ServerProcess,
) -> None:
    async with rig(valkey_server.url("down")) as r:
        await r.start(1)  # connects, and makes the group's stream
        await r.queue.claim("host-a", 10, LONG_LEASE, ELIGIBLE)
        valkey_server.kill()

        [record] = await asyncio.wait_for(r.start(1), timeout=PATIENCE * 3)
        claims = await asyncio.wait_for(
            r.queue.claim("host-a", 10, LONG_LEASE, ELIGIBLE), timeout=PATIENCE * 3
        )

        assert [c.workflow_id for c in claims] == [record.id]
        valkey_server.start()
        [again] = await r.start(1)
        assert await r.stream() == (1, 0)
        assert [c.workflow_id for c in await r.queue.claim("host-a", 10, LONG_LEASE, ELIGIBLE)] == [
            again.id
        ]


async def test_a_paused_server_delays_claims_by_its_patience_at_most(
    valkey_server: ServerProcess,
) -> None:
    async with rig(valkey_server.url("paused")) as r:
        [first] = await r.start(1)
        valkey_server.pause()
        try:
            unannounced = await create(r.backend)
            claims = await asyncio.wait_for(
                r.queue.claim("host-a", 10, LONG_LEASE, ELIGIBLE), timeout=PATIENCE * 3
            )
            assert sorted(c.workflow_id for c in claims) == sorted([first.id, unannounced.id])
        finally:
            valkey_server.resume()
        [later] = await r.start(1)
        claims = await r.queue.claim("host-b", 10, LONG_LEASE, ELIGIBLE)
        assert [c.workflow_id for c in claims] == [later.id]


async def test_consumers_gone_idle_with_nothing_pending_are_forgotten(valkey_url: str) -> None:
    async with rig(valkey_url) as r:
        await r.start(2)
        streams, pair = r.queue.streams, ELIGIBLE[0]
        done = await streams.read("host-gone", 1, [pair])
        await streams.ack(done)
        await streams.read("host-dead", 1, [pair])  # holds an entry: kept until reclaimed
        await asyncio.sleep(0.2)

        gone = await streams.forget_idle_consumers([pair, ("never-read", 1)], 100)

        consumers = await streams.client.xinfo_consumers(streams.stream(*pair), GROUP)
        assert gone == 1
        assert [c["name"] for c in consumers] == [b"host-dead"]
