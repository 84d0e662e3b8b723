"""A write whose COMMIT outcome is unknown (the connection died while COMMIT was in
flight) is retried safely: a step commit that had landed is recognised and not applied
again, one that had not lands once; creates, publishes and status changes reconcile
(RELIABILITY R5, §9.7). On every SQL backend."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from wfe_core.errors import LeaseLost
from wfe_core.models import (
    CHILD_FINISHED_EVENT,
    StepCommit,
    WorkflowStatus,
)
from wfe_core.ports.backend import Backend
from wfe_sql import commit as commits
from wfe_sql.connection import SqlConnection
from wfe_sql.schema import events, pointers, workflows

from .conftest import database_of
from .support import ELIGIBLE, claimed_workflow, full_commit, new_workflow, table_rows


def lost_in_transit() -> sa_exc.DBAPIError:
    """What a driver raises when the link dies while COMMIT is in flight."""
    return sa_exc.OperationalError(
        "COMMIT", None, ConnectionResetError("link lost"), connection_invalidated=True
    )


@contextlib.contextmanager
def commit_lost(
    monkeypatch: pytest.MonkeyPatch, *, landed: bool, times: int = 1
) -> Iterator[list[int]]:
    """The next ``times`` COMMITs fail as if the link died: after the server committed
    (``landed``) or before it received the COMMIT. Yields the count of failures made.

    Patched on SQLAlchemy's synchronous ``Connection``, which every backend's
    connection commits through (directly, or from a greenlet)."""
    real_commit = Connection.commit
    failures: list[int] = []

    def commit(self: Connection) -> None:
        if len(failures) >= times:
            real_commit(self)
            return
        failures.append(1)
        if landed:
            real_commit(self)
        else:
            self.rollback()
        raise lost_in_transit()

    with monkeypatch.context() as patch:
        patch.setattr(Connection, "commit", commit)
        yield failures


@pytest.mark.parametrize("release", [True, False], ids=["released", "lease-kept"])
async def test_a_commit_that_landed_is_not_applied_again(
    sql_backend: Backend, monkeypatch: pytest.MonkeyPatch, release: bool
) -> None:
    store, db = sql_backend.persistence, database_of(sql_backend)
    claim, first = await claimed_workflow(sql_backend)
    event = await store.publish_event("other", "e", "{}")
    commit = full_commit(sql_backend, claim, first, event.id, release=release)

    with commit_lost(monkeypatch, landed=True) as failures:
        status = await store.commit(commit)

    assert failures == [1]  # the first COMMIT did fail, and the retry recognised it
    assert status is WorkflowStatus.RUNNABLE
    stored = await table_rows(db, claim.workflow_id)
    assert len(stored["wfe_pointers"]) == 2
    assert len(stored["wfe_subscriptions"]) == 1
    assert len(stored["wfe_deliveries"]) == 1
    assert [e["message"] for e in stored["wfe_errors"]] == ["boom"]
    [row] = stored["wfe_workflows"]
    assert json.loads(row["data"]) == {"n": 1}
    assert row["lease_owner"] == (None if release else "host")


async def test_a_commit_that_did_not_land_lands_once_on_retry(
    sql_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = sql_backend.persistence, database_of(sql_backend)
    claim, first = await claimed_workflow(sql_backend)
    event = await store.publish_event("other", "e", "{}")
    commit = full_commit(sql_backend, claim, first, event.id, release=True)

    with commit_lost(monkeypatch, landed=False) as failures:
        assert await store.commit(commit) is WorkflowStatus.RUNNABLE

    assert failures == [1]
    stored = await table_rows(db, claim.workflow_id)
    assert (len(stored["wfe_pointers"]), len(stored["wfe_subscriptions"])) == (2, 1)
    assert (len(stored["wfe_deliveries"]), len(stored["wfe_errors"])) == (1, 1)


async def test_the_same_prepared_commit_run_twice_changes_nothing_the_second_time(
    sql_backend: Backend,
) -> None:
    store, db = sql_backend.persistence, database_of(sql_backend)
    for release in (False, True):
        claim, first = await claimed_workflow(sql_backend)
        event = await store.publish_event("other", "e", "{}")
        prepared = commits.prepare_commit(
            full_commit(sql_backend, claim, first, event.id, release=release)
        )

        async def apply(conn: SqlConnection, prepared: Any = prepared) -> commits.CommitResult:
            return await commits.apply_commit(conn, db.dialect, prepared)

        first_result = await db.write("commit", apply)
        after_first = await table_rows(db, claim.workflow_id)
        second_result = await db.write("commit again", apply)

        assert await table_rows(db, claim.workflow_id) == after_first
        assert (second_result.status, second_result.due) == (
            first_result.status,
            first_result.due,
        )


async def test_a_different_commit_under_a_released_lease_is_still_fenced_off(
    sql_backend: Backend,
) -> None:
    store = sql_backend.persistence
    claim, _ = await claimed_workflow(sql_backend)
    released = StepCommit(
        workflow_id=claim.workflow_id,
        owner=claim.owner,
        token=claim.token,
        next_execution=0,
        release=True,
    )
    await store.commit(released)
    with pytest.raises(LeaseLost):
        await store.commit(released)  # a new commit (a new id), not a retry of the first


async def test_creates_publishes_and_status_changes_reconcile_after_a_lost_commit(
    sql_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = sql_backend.persistence, database_of(sql_backend)
    with commit_lost(monkeypatch, landed=True, times=3) as failures:
        record, created = await store.create_workflow(new_workflow())
        event = await store.publish_event("paid", "k", json.dumps({"x": 1}))
        suspended = await store.set_status(
            record.id, "suspend", frozenset({WorkflowStatus.RUNNABLE}), WorkflowStatus.SUSPENDED
        )
    assert failures == [1, 1, 1]
    assert created and suspended.status is WorkflowStatus.SUSPENDED
    assert event.data == {"x": 1}

    async def count(conn: SqlConnection) -> tuple[int, int, int]:
        def n(table: sa.Table) -> Any:
            return sa.select(sa.func.count()).select_from(table)

        return (
            (await conn.execute(n(workflows))).scalar_one(),
            (await conn.execute(n(pointers))).scalar_one(),
            (await conn.execute(n(events))).scalar_one(),
        )

    assert await db.read("count", count) == (1, 1, 1)


async def child_finished_events(sql_backend: Backend, child_id: str) -> list[dict[str, Any]]:
    """The stored child-finished event rows of ``child_id`` (their data parsed)."""

    async def read(conn: SqlConnection) -> list[dict[str, Any]]:
        stmt = sa.select(events.c.data).where(
            events.c.name == CHILD_FINISHED_EVENT, events.c.key == child_id
        )
        return [json.loads(data) for data in (await conn.execute(stmt)).scalars()]

    return await database_of(sql_backend).read("read child events", read)


async def claimed_child(sql_backend: Backend) -> StepCommit:
    """The finishing commit of a new child workflow claimed by "host"."""
    parent, _ = await sql_backend.persistence.create_workflow(new_workflow(next_execution=None))
    child, _ = await sql_backend.persistence.create_workflow(new_workflow(parent_id=parent.id))
    [claim] = await sql_backend.queue.claim("host", 1, 30.0, ELIGIBLE)
    assert claim.workflow_id == child.id
    return StepCommit(
        workflow_id=child.id,
        owner=claim.owner,
        token=claim.token,
        data=json.dumps({"n": 1}),
        status=WorkflowStatus.COMPLETE,
    )


@pytest.mark.parametrize("landed", [True, False], ids=["landed", "not-landed"])
async def test_a_finishing_commit_retried_after_a_lost_commit_publishes_once(
    sql_backend: Backend, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    finish = await claimed_child(sql_backend)

    with commit_lost(monkeypatch, landed=landed) as failures:
        assert await sql_backend.persistence.commit(finish) is WorkflowStatus.COMPLETE

    assert failures == [1]
    [event] = await child_finished_events(sql_backend, finish.workflow_id)
    assert (event["status"], event["data"]) == ("COMPLETE", {"n": 1})


async def test_a_finishing_prepared_commit_run_twice_publishes_once(sql_backend: Backend) -> None:
    db = database_of(sql_backend)
    prepared = commits.prepare_commit(await claimed_child(sql_backend))

    async def apply(conn: SqlConnection) -> commits.CommitResult:
        return await commits.apply_commit(conn, db.dialect, prepared)

    first = await db.write("commit", apply)
    second = await db.write("commit again", apply)

    assert first.status is second.status is WorkflowStatus.COMPLETE
    assert len(await child_finished_events(sql_backend, prepared.commit.workflow_id)) == 1


async def test_a_terminate_retried_after_a_lost_commit_publishes_once(
    sql_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    finish = await claimed_child(sql_backend)
    unfinished = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})

    with commit_lost(monkeypatch, landed=True) as failures:
        record = await sql_backend.persistence.set_status(
            finish.workflow_id, "terminate", unfinished, WorkflowStatus.TERMINATED
        )

    assert failures == [1]
    assert record.status is WorkflowStatus.TERMINATED
    [event] = await child_finished_events(sql_backend, finish.workflow_id)
    assert event["status"] == "TERMINATED"
