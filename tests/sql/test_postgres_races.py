"""The publish/commit race under READ COMMITTED (PostgreSQL).

A publish inserts an event and wakes the RUNNABLE workflows subscribed to it; a commit
that adds a matching subscription makes its workflow due if a matching event is
undelivered. Running at once, each can miss the other's uncommitted row, and then
neither wakes the workflow: it waits forever. The advisory lock on (event name, key)
that both take first (``SqlDialect.lock_event_keys``) serialises exactly these two.

The deterministic tests hold one transaction open at the critical point while the other
runs, in both orders; without the lock they show the lost wake-up, with it they do not.
The stress test races the two for real from two engines, many times.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from wfe.backends import open_backend
from wfe_core.models import Claim, EventSubscription, StepCommit, WorkflowStatus
from wfe_core.ports.backend import Backend
from wfe_sql import commit as commits
from wfe_sql import events
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database

from .conftest import database_of
from .support import ELIGIBLE, new_workflow

ITERATIONS = 100  # without the lock, about half of them lose their wake-up


async def waiting_on_advisory_lock(db: Database) -> bool:
    async def count(conn: SqlConnection) -> int:
        stmt = (
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        return int((await conn.exec_driver_sql(stmt)).scalar_one())

    return await db.read("look at locks", count) > 0


async def until_blocked_or_done(
    db: Database,
    task: asyncio.Task[Any],
    waiting: Callable[[Database], Awaitable[bool]] = waiting_on_advisory_lock,
) -> None:
    """Wait until ``task`` waits for a lock (an advisory one unless ``waiting`` says
    which), or has finished."""
    async with asyncio.timeout(10):
        while True:
            if task.done() or await waiting(db):
                return
            await asyncio.sleep(0.01)


@asynccontextmanager
async def open_transaction(db: Database) -> AsyncIterator[SqlConnection]:
    """A write transaction held open by the test; committed when the block exits."""
    conn = await db.engine.connect()
    try:
        await db.dialect.begin(conn, write=True)
        yield conn
        await conn.commit()
    finally:
        await conn.close()


async def claimed(backend: Backend) -> Claim:
    record, _ = await backend.persistence.create_workflow(new_workflow())
    [claim] = await backend.queue.claim("host-a", 1, 30.0, ELIGIBLE)
    assert claim.workflow_id == record.id
    return claim


def finish(claim: Claim) -> StepCommit:
    return StepCommit(
        workflow_id=claim.workflow_id,
        owner=claim.owner,
        token=claim.token,
        status=WorkflowStatus.COMPLETE,
    )


def subscribe(claim: Claim, key: str, event_name: str = "paid") -> StepCommit:
    """The commit of a step that starts waiting for (event_name, key) and goes idle."""
    sub = EventSubscription(
        id=f"sub-{uuid.uuid4()}",
        workflow_id=claim.workflow_id,
        pointer_id=f"p-{uuid.uuid4()}",
        event_name=event_name,
        event_key=key,
        as_of=0,
    )
    return StepCommit(
        workflow_id=claim.workflow_id,
        owner=claim.owner,
        token=claim.token,
        next_execution=None,
        release=True,
        new_subscriptions=[sub],
    )


async def is_due(backend: Backend, workflow_id: str) -> bool:
    claims = await backend.queue.claim("host-b", 10, 30.0, ELIGIBLE)
    return [c.workflow_id for c in claims] == [workflow_id]


async def test_a_publish_during_a_commit_adding_its_subscription(
    pg_backend: Backend, locking: bool
) -> None:
    db = database_of(pg_backend)
    claim = await claimed(pg_backend)
    prepared = commits.prepare_commit(subscribe(claim, "k"))
    async with open_transaction(db) as conn:
        await commits.apply_commit(conn, db.dialect, prepared)
        # The subscription is written, not committed: now the event is published.
        publish = asyncio.create_task(pg_backend.persistence.publish_event("paid", "k", "{}"))
        await until_blocked_or_done(db, publish)
    await publish
    assert await is_due(pg_backend, claim.workflow_id) is locking


async def test_a_commit_adding_a_subscription_during_a_publish(
    pg_backend: Backend, locking: bool
) -> None:
    db = database_of(pg_backend)
    claim = await claimed(pg_backend)
    async with open_transaction(db) as conn:
        # publish_event's statements, held open after the wake-up found no subscriber.
        await db.dialect.lock_event_keys(conn, [("paid", "k")])
        event = await events.insert_event(conn, db.dialect, uuid.uuid4().hex, "paid", "k", "{}")
        assert await events.wake_subscribers(conn, event) == 0
        commit = asyncio.create_task(pg_backend.persistence.commit(subscribe(claim, "k")))
        await until_blocked_or_done(db, commit)
    await commit
    assert await is_due(pg_backend, claim.workflow_id) is locking


async def jittered(work: Awaitable[Any], rng: random.Random) -> Any:
    await asyncio.sleep(rng.uniform(0, 0.003))
    return await work


async def test_racing_publishes_and_commits_from_two_hosts_never_lose_a_wake_up(
    pg_url: str,
) -> None:
    rng = random.Random(4242)
    committer, publisher = open_backend(pg_url), open_backend(pg_url)
    lost: list[str] = []
    try:
        await committer.persistence.migrate()
        for i in range(ITERATIONS):
            claim = await claimed(committer)
            key = f"order-{i}"
            commit = subscribe(claim, key)
            await asyncio.gather(
                jittered(committer.persistence.commit(commit), rng),
                jittered(publisher.persistence.publish_event("paid", key, "{}"), rng),
            )
            claims = await publisher.queue.claim("host-b", 10, 30.0, ELIGIBLE)
            if [c.workflow_id for c in claims] != [claim.workflow_id]:
                lost.append(claim.workflow_id)
            # Finished, so that the next round's claim finds only its own workflow (a
            # lost one is not due, so it cannot get in the way either).
            for woken in claims:
                await publisher.persistence.commit(finish(woken))
    finally:
        await committer.close()
        await publisher.close()
    assert lost == [], f"{len(lost)} of {ITERATIONS} workflows were never woken"
