"""Named locks with leases and fencing tokens, for singleton background jobs."""

from __future__ import annotations

import sqlalchemy as sa

from wfe_core.errors import LeaseLost
from wfe_core.models import Lease
from wfe_core.ports.lock import LockProvider
from wfe_sql.connection import SqlConnection
from wfe_sql.database import Database
from wfe_sql.dialect import SqlDialect
from wfe_sql.schema import locks

_LEASE_COLUMNS = (locks.c.name, locks.c.owner, locks.c.token, locks.c.expires_at)


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 0)


def _lease(row: sa.Row[tuple[str, str, int, int]]) -> Lease:
    return Lease(name=row.name, owner=row.owner, token=row.token, expires_at=row.expires_at)


async def take_lock(
    conn: SqlConnection, dialect: SqlDialect, name: str, owner: str, ttl_ms: int
) -> Lease | None:
    """Take the lock, with the next token, if it is free, released, expired or already
    ``owner``'s; ``None`` if someone else holds it."""
    now = dialect.now_ms()
    stmt = dialect.upsert(
        locks,
        {"name": name, "owner": owner, "token": 1, "expires_at": now + ttl_ms},
        ["name"],
        {"owner": owner, "token": locks.c.token + 1, "expires_at": now + ttl_ms},
        where=sa.or_(locks.c.owner.is_(None), locks.c.expires_at <= now, locks.c.owner == owner),
    ).returning(*_LEASE_COLUMNS)
    row = (await conn.execute(stmt)).first()
    return None if row is None else _lease(row)


async def extend_lock(
    conn: SqlConnection, dialect: SqlDialect, lease: Lease, ttl_ms: int
) -> Lease | None:
    """Push a held lock's expiry to now + ttl; ``None`` if the lease is no longer ours."""
    stmt = (
        sa.update(locks)
        .where(
            locks.c.name == lease.name, locks.c.owner == lease.owner, locks.c.token == lease.token
        )
        .values(expires_at=dialect.now_ms() + ttl_ms)
        .returning(*_LEASE_COLUMNS)
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else _lease(row)


async def free_lock(conn: SqlConnection, lease: Lease) -> None:
    """Free a held lock, keeping its token; a stale lease changes nothing."""
    await conn.execute(
        sa.update(locks)
        .where(
            locks.c.name == lease.name, locks.c.owner == lease.owner, locks.c.token == lease.token
        )
        .values(owner=None, expires_at=None)
    )


class SqlLock(LockProvider):
    """Named leases stored in ``wfe_locks``; expiry judged by the database clock."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> Lease | None:
        """Take the lock if it is free or expired (or already ``owner``'s, which gets a new
        token); ``None`` if someone else holds it."""
        return await self._db.write(
            f"acquire lock {name!r}",
            lambda conn: take_lock(conn, self._db.dialect, name, owner, _ms(ttl_seconds)),
        )

    async def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend a held lease; raise ``LeaseLost`` if it is no longer ours."""
        renewed = await self._db.write(
            f"renew lock {lease.name!r}",
            lambda conn: extend_lock(conn, self._db.dialect, lease, _ms(ttl_seconds)),
            urgent=True,
            retry_for=ttl_seconds / 4,
        )
        if renewed is None:
            raise LeaseLost(lease.name, lease.token)
        return renewed

    async def release(self, lease: Lease) -> None:
        """Free the lock if we still hold it (checked by token); otherwise do nothing."""
        await self._db.write(f"release lock {lease.name!r}", lambda conn: free_lock(conn, lease))
