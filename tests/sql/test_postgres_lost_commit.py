"""The connection dies right after COMMIT reached the server, before its answer came
back (RELIABILITY R5), for real: a TCP proxy between the host and PostgreSQL forwards
the client's COMMIT, then cuts both sides without relaying the reply. The host sees a
lost connection with an unknown outcome, retries, and finds that its first attempt
landed: every write happens exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import sqlalchemy as sa

from wfe.backends import open_backend
from wfe_core.models import Claim, StartLease, WorkflowStatus
from wfe_core.ports.backend import Backend

from .conftest import database_of
from .support import ELIGIBLE, full_commit, new_workflow, table_rows


class CommitCutter:
    """A TCP proxy to PostgreSQL that, while :attr:`armed`, lets a client's COMMIT
    (or the statement :attr:`cut_on` names) through and then drops the connection
    before the server's reply is relayed."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.armed = 0
        self.cut_on = b"COMMIT"
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        server_in, server_out = await asyncio.open_connection(*self.target)
        held = asyncio.Event()  # set once a COMMIT went through: no more replies relayed

        async def upstream() -> None:
            while data := await client_in.read(65536):
                cut = self.armed > 0 and self.cut_on in data
                if cut:
                    self.armed -= 1
                    self.cuts += 1
                    held.set()
                server_out.write(data)
                await server_out.drain()
                if cut:
                    await asyncio.sleep(0.2)  # the server commits; its answer is dropped
                    return

        async def downstream() -> None:
            while data := await server_in.read(65536):
                if not held.is_set():
                    client_out.write(data)
                    await client_out.drain()

        pipes = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._pipes.difference_update(pipes)
            for writer in (client_out, server_out):
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()


@contextlib.asynccontextmanager
async def through_cutter(url: str) -> AsyncIterator[tuple[Backend, CommitCutter]]:
    parsed = sa.make_url(url)
    cutter = CommitCutter(parsed.host or "127.0.0.1", parsed.port or 5432)
    await cutter.start()
    # In clear: the proxy must see the COMMIT go by.
    proxied = parsed.set(host="127.0.0.1", port=cutter.port).update_query_dict({"ssl": "disable"})
    backend = open_backend(proxied.render_as_string(False))
    try:
        yield backend, cutter
    finally:
        await backend.close()
        await cutter.close()


async def count(url: str, table: str) -> int:
    conn: Any = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await conn.close()


async def test_a_step_commit_cut_after_commit_lands_exactly_once(pg_url: str) -> None:
    async with through_cutter(pg_url) as (backend, cutter):
        store = backend.persistence
        record, _ = await store.create_workflow(new_workflow())
        [claim] = await backend.queue.claim("host", 1, 30.0, ELIGIBLE)
        event = await store.publish_event("other", "e", "{}")
        first_pointer = (await store.get_pointers(record.id))[0].id
        commit = full_commit(backend, claim, first_pointer, event.id, release=True)

        cutter.armed = 1
        assert await store.commit(commit) is WorkflowStatus.RUNNABLE
        assert cutter.cuts == 1

        stored = await table_rows(database_of(backend), record.id)
    assert (len(stored["wfe_pointers"]), len(stored["wfe_subscriptions"])) == (2, 1)
    assert (len(stored["wfe_deliveries"]), len(stored["wfe_errors"])) == (1, 1)
    [row] = stored["wfe_workflows"]
    assert json.loads(row["data"]) == {"n": 1} and row["lease_owner"] is None


async def test_creates_and_publishes_cut_after_commit_happen_once(pg_url: str) -> None:
    async with through_cutter(pg_url) as (backend, cutter):
        cutter.armed = 1
        record, created = await backend.persistence.create_workflow(new_workflow())
        cutter.armed = 1
        event = await backend.persistence.publish_event("paid", "k", json.dumps({"x": 1}))
        assert cutter.cuts == 2
        assert created and (await backend.persistence.get_workflow(record.id)).id == record.id
        assert event.data == {"x": 1}
    assert await count(pg_url, "wfe_workflows") == 1
    assert await count(pg_url, "wfe_pointers") == 1
    assert await count(pg_url, "wfe_events") == 1


async def test_a_start_sent_as_one_statement_cut_in_flight_happens_once(pg_url: str) -> None:
    # A leased start with nothing to check is one INSERT in autocommit: the INSERT is
    # its own COMMIT, so its answer is what the cut drops.
    async with through_cutter(pg_url) as (backend, cutter):
        cutter.cut_on, cutter.armed = b"INSERT INTO wfe_workflows", 1
        new = new_workflow(pointers=[], lease=StartLease(owner="host", seconds=30))
        record, created = await backend.persistence.create_workflow(new)
        assert cutter.cuts == 1
        claim = Claim.of_created(record)
        assert created and claim is not None and claim.token == 1
    assert await count(pg_url, "wfe_workflows") == 1
