"""A fresh database for every run, and PostgreSQL's transaction counters.

Only databases named ``wfe_bench*`` are ever created or dropped. The admin connection
goes to the ``postgres`` database, never to the run's own, so reading the counters does
not add to them.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg

RUN_DB = "wfe_bench_run"
WORK = Path(__file__).resolve().parents[1] / ".work"


def _checked(name: str) -> str:
    if not re.fullmatch(r"wfe_bench[a-z0-9_]*", name):
        raise ValueError(f"refusing to touch database {name!r}: not a wfe_bench* name")
    return name


class Postgres:
    """The server at ``base`` (``postgresql://postgres@127.0.0.1:5432``)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self._admin: asyncpg.Connection | None = None

    def url(self, name: str = RUN_DB) -> str:
        return f"{self.base}/{_checked(name)}"

    async def admin(self) -> asyncpg.Connection:
        if self._admin is None or self._admin.is_closed():
            self._admin = await asyncpg.connect(f"{self.base}/postgres")
        return self._admin

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()

    async def fresh(self, name: str = RUN_DB) -> str:
        """Drop and create ``name``; its URL."""
        admin = await self.admin()
        await admin.execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    async def drop(self, name: str = RUN_DB) -> None:
        admin = await self.admin()
        await admin.execute(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')

    async def server_version(self) -> str:
        return str(await (await self.admin()).fetchval("SHOW server_version"))

    async def xact_counts(self, name: str = RUN_DB) -> tuple[int, int]:
        """(xact_commit, xact_rollback) of database ``name``, read afresh."""
        admin = await self.admin()
        async with admin.transaction():
            # Statistics are cached per transaction; clearing makes this read new.
            await admin.execute("SELECT pg_stat_clear_snapshot()")
            row = await admin.fetchrow(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
                name,
            )
        return (row["xact_commit"], row["xact_rollback"]) if row else (0, 0)

    async def settled_xact_counts(
        self, name: str = RUN_DB, timeout: float = 15.0
    ) -> tuple[int, int]:
        """The counters once they stop moving: backends flush their statistics when
        they exit, and a flush can land a moment after the process that owned them is
        gone, so read every second until two reads agree."""
        last = await self.xact_counts(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await asyncio.sleep(1.0)
            now = await self.xact_counts(name)
            if now == last:
                return now
            last = now
        return last


def fresh_sqlite(name: str) -> str:
    """A new SQLite file under ``benchmarks/.work``; its URL."""
    WORK.mkdir(exist_ok=True)
    path = WORK / f"{name}.sqlite"
    remove_sqlite(path)
    return f"sqlite:///{path}"


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])
