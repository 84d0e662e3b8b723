"""The work queue: claiming due workflows under a lease, renewing, releasing, waking.

Due-ness and lease expiry are always compared with the database clock inside SQL, so a
host's wrong or stepping clock can neither steal work nor keep it. Recovery of a dead
host's work is part of the claim (an expired lease is free), not a separate janitor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from wfe_core.models import Claim, WorkflowRecord
from wfe_core.ports.queue import LeaseStore
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database
from wfe_sql.dialect import SqlDialect
from wfe_sql.schema import RUNNABLE_SQL, workflows
from wfe_sql.statements import prepared
from wfe_sql.workflows import locked_in_id_order


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 0)


def _eligible(eligible: Sequence[tuple[str, int]]) -> sa.ColumnElement[bool]:
    """Rows of the eligible (definition, version) pairs. One pair is two equalities, so
    both databases read ix_wfe_workflows_due in due order and stop at the limit (SQLite
    does not match a row-value IN against the index, and would sort every due row)."""
    if len(eligible) == 1:
        [(definition_id, version)] = eligible
        return sa.and_(
            workflows.c.definition_id == sa.literal(definition_id),
            workflows.c.version == sa.literal(version),
        )
    return sa.tuple_(workflows.c.definition_id, workflows.c.version).in_(list(eligible))


def _due(dialect: SqlDialect, eligible: Sequence[tuple[str, int]]) -> sa.Select[Any]:
    """Ids of the due, unleased workflows of the eligible pairs (an expired lease
    counts as free)."""
    now = dialect.now_ms()
    return sa.select(workflows.c.id).where(
        workflows.c.status == RUNNABLE_SQL,
        workflows.c.next_execution <= now,
        sa.or_(workflows.c.lease_expires_at.is_(None), workflows.c.lease_expires_at <= now),
        _eligible(eligible),
    )


def due_candidates(dialect: SqlDialect, eligible: Sequence[tuple[str, int]]) -> sa.Select[Any]:
    """Ids of up to ``:limit`` due, unleased workflows of the eligible pairs, earliest
    due first; uses ix_wfe_workflows_due."""
    return dialect.lock_candidates(
        _due(dialect, eligible)
        .order_by(workflows.c.next_execution)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def _lease_candidates(dialect: SqlDialect, candidates: sa.Select[Any]) -> sa.Update:
    """Lease the ``candidates`` to ``:owner`` for ``:lease_ms``, returning the claims.

    Each claimed row gets a new token (+1); taking over a lease that was never released
    (its holder died) also counts a recovery.
    """
    now = dialect.now_ms()
    return (
        sa.update(workflows)
        .where(workflows.c.id.in_(candidates.scalar_subquery()))
        .values(
            lease_owner=sa.bindparam("owner", type_=sa.Text),
            lease_token=workflows.c.lease_token + 1,
            lease_expires_at=now + sa.bindparam("lease_ms", type_=sa.BigInteger),
            recoveries=workflows.c.recoveries
            + sa.case((workflows.c.lease_owner.is_not(None), 1), else_=0),
        )
        .returning(
            workflows.c.id,
            workflows.c.lease_token,
            workflows.c.lease_expires_at,
            workflows.c.recoveries,
            workflows.c.next_execution,
            now.label("db_now"),
        )
    )


def claim_statement(dialect: SqlDialect, eligible: Sequence[tuple[str, int]]) -> sa.Update:
    """Claim up to ``:limit`` due workflows whose lease is free for ``:owner``, for
    ``:lease_ms``; uses ix_wfe_workflows_due. Built once per set of eligible pairs
    (a host's set changes only when it registers a definition)."""
    return prepared(
        dialect,
        ("claim", tuple(sorted(eligible))),
        lambda: _lease_candidates(dialect, due_candidates(dialect, eligible)),
    )


def claim_ids_statement(dialect: SqlDialect, eligible: Sequence[tuple[str, int]]) -> sa.Update:
    """Claim those of the workflows listed in ``:ids`` that are due and free, for
    ``:owner`` and ``:lease_ms``; reads them by primary key."""
    return prepared(
        dialect,
        ("claim_ids", tuple(sorted(eligible))),
        lambda: _lease_candidates(
            dialect,
            dialect.lock_candidates(
                _due(dialect, eligible).where(dialect.in_values(workflows.c.id, "ids"))
            ),
        ),
    )


def _claims_of(result: sa.CursorResult[Any], owner: str) -> list[Claim]:
    # RETURNING follows no ORDER BY: the rows come back in whatever order they were
    # updated (on PostgreSQL, not the candidates' order).
    claimed = sorted(result, key=lambda row: row.next_execution)
    return [_claim_of(row, owner) for row in claimed]


def _claim_of(row: Any, owner: str) -> Claim:
    """The claim a leased row (id, lease_token, lease_expires_at, recoveries, db_now)
    stands for."""
    return Claim(
        workflow_id=row.id,
        owner=owner,
        token=row.lease_token,
        expires_at=row.lease_expires_at,
        db_now=row.db_now,
        recoveries=row.recoveries,
    )


async def renew_leases(
    conn: SqlConnection, dialect: SqlDialect, claims: Sequence[Claim], lease_ms: int
) -> list[Claim]:
    """Push the expiry of held leases to now + lease, one statement per owner; returns
    the renewed claims (a stale one is left out)."""
    now = dialect.now_ms()
    by_owner: dict[str, dict[str, Claim]] = {}
    for claim in claims:
        by_owner.setdefault(claim.owner, {})[claim.workflow_id] = claim
    renewed = []
    for owner, held in by_owner.items():
        stmt = prepared(
            dialect,
            "renew_leases",
            lambda: (
                sa.update(workflows)
                .where(
                    workflows.c.id.in_(
                        locked_in_id_order(
                            dialect, workflows.c.lease_owner == sa.bindparam("owner")
                        )
                    )
                )
                .values(lease_expires_at=now + sa.bindparam("lease_ms", type_=sa.BigInteger))
                .returning(
                    workflows.c.id,
                    workflows.c.lease_token,
                    workflows.c.lease_expires_at,
                    workflows.c.recoveries,
                    now.label("db_now"),
                )
            ),
        )
        params = {"owner": owner, "ids": dialect.values_param(list(held)), "lease_ms": lease_ms}
        for row in await conn.execute(stmt, params):
            claim = held[row.id]
            # The same owner under a newer token is a later claim of ours: this one is
            # stale (extending the row is harmless: we do hold it).
            if row.lease_token == claim.token:
                renewed.append(_claim_of(row, owner))
    return renewed


async def release_lease(conn: SqlConnection, dialect: SqlDialect, claim: Claim) -> int | None:
    """Give a held lease up and make the workflow due now; returns the database time, or
    ``None`` if the claim is stale. The token stays: it only ever grows."""
    now = dialect.now_ms()
    stmt = (
        sa.update(workflows)
        .where(
            workflows.c.id == claim.workflow_id,
            workflows.c.lease_owner == claim.owner,
            workflows.c.lease_token == claim.token,
        )
        .values(lease_owner=None, lease_expires_at=None, next_execution=now)
        .returning(now.label("db_now"))
    )
    db_now = (await conn.execute(stmt)).scalar_one_or_none()
    return None if db_now is None else int(db_now)


class SqlQueue(LeaseStore):
    """Hands out due workflows under leases from the SQL store."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.supports_notify = db.dialect.supports_notify

    async def claim(
        self, owner: str, limit: int, lease_seconds: float, eligible: Sequence[tuple[str, int]]
    ) -> list[Claim]:
        """Lease up to ``limit`` due workflows of the eligible (definition, version) pairs."""
        if limit <= 0 or not eligible:
            return []
        await self._db.ensure_listener()
        statement = claim_statement(self._db.dialect, eligible)
        params = {"owner": owner, "limit": limit, "lease_ms": _ms(lease_seconds)}
        return await self._lease("claim workflows", statement, params)

    async def claim_ids(
        self,
        owner: str,
        workflow_ids: Sequence[str],
        lease_seconds: float,
        eligible: Sequence[tuple[str, int]],
    ) -> list[Claim]:
        """Lease those of ``workflow_ids`` that are due, eligible and free."""
        if not workflow_ids or not eligible:
            return []
        dialect = self._db.dialect
        statement = claim_ids_statement(dialect, eligible)
        params = {
            "owner": owner,
            "ids": dialect.values_param(list(dict.fromkeys(workflow_ids))),
            "lease_ms": _ms(lease_seconds),
        }
        return await self._lease("claim workflows by id", statement, params)

    async def _lease(self, what: str, statement: sa.Update, params: dict[str, Any]) -> list[Claim]:
        """Run a claim statement (:func:`claim_statement`, :func:`claim_ids_statement`)
        and return its claims, oldest due first."""

        async def work(conn: SqlConnection) -> list[Claim]:
            started = time.monotonic_ns()
            claims = _claims_of(await conn.execute(statement, params), params["owner"])
            if claims:
                self._db.observe_time(claims[0].db_now, started)
            return claims

        # One UPDATE … RETURNING: atomic by itself, it needs no BEGIN and COMMIT.
        return await self._db.write(what, work, single=True)

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> list[Claim]:
        """Extend the leases still held; a claim missing from the result was lost."""
        dialect, lease_ms = self._db.dialect, _ms(lease_seconds)

        async def work(conn: SqlConnection) -> list[Claim]:
            started = time.monotonic_ns()
            renewed = await renew_leases(conn, dialect, claims, lease_ms)
            if renewed:
                self._db.observe_time(renewed[0].db_now, started)
            return renewed

        if not claims:
            return []
        # A renewal retried past a fraction of the lease is too late to help: the host
        # must learn of the failure in time to fence itself off.
        return await self._db.write("renew leases", work, urgent=True, retry_for=lease_seconds / 4)

    async def release(self, claim: Claim) -> None:
        """Give the lease up and make the workflow due now; a stale claim is ignored."""

        async def work(conn: SqlConnection) -> bool:
            started = time.monotonic_ns()
            db_now = await release_lease(conn, self._db.dialect, claim)
            if db_now is None:
                return False
            self._db.observe_time(db_now, started)
            await self._db.dialect.notify_work(conn)
            return True

        what = f"release the lease on workflow {claim.workflow_id}"
        if await self._db.write(what, work, urgent=True):
            self.wake()

    async def enqueue(self, record: WorkflowRecord) -> None:
        """Nothing to do: the table is the queue, and a start's NOTIFY its wake-up."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return on a wake-up (this process, or a notification) or after ``timeout``."""
        await self._db.ensure_listener()
        await self._db.signal.wait(timeout)

    def wake(self) -> None:
        """Wake this process's waiters now."""
        self._db.signal.set()
