"""The engine and its transaction scopes, and the one seam where driver errors become
:class:`wfe_core.errors.ProviderError`.

Transactions are short and contain only SQL: a write takes the process's write guard,
starts a write transaction (``BEGIN IMMEDIATE`` on SQLite) and commits; any exit other
than success rolls back. Each transaction runs in a task of its own that a cancellation
of the caller does not interrupt (it is delivered when the transaction has ended), so a
cancelled task never leaves a pooled connection inside a transaction nor a statement
half-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wfe_core.clock import SyncedClock
from wfe_core.errors import ProviderError
from wfe_sql.dialect import Listener, SqlDialect

logger = logging.getLogger(__name__)

T = TypeVar("T")

Work = Callable[[AsyncConnection], Awaitable[T]]
"""The SQL of one transaction: an async function of the connection."""

CLOCK_MARGIN_MS = 2
"""Added to a database time read back, to cover whole-millisecond truncation on both
sides, so that :meth:`Database.observe_time` gives an upper bound of the database clock."""


class WorkSignal:
    """An in-process wake-up: set when work may have become due, awaited by idle hosts."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        """Wake every waiter of this process."""
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Return on a wake-up (even one made before the call) or after ``seconds``.

        The flag is cleared before returning, so a wake-up that arrives while the
        caller then polls is kept for its next wait instead of being lost; a cancelled
        waiter leaves it set, so that it cannot eat a wake-up meant for another.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # An asyncio.Event binds to the loop of its first waiter; moved to another
            # loop (a client used from two asyncio.run calls), keep a pending wake-up.
            pending = self._event.is_set()
            self._event, self._loop = asyncio.Event(), loop
            if pending:
                self._event.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._event.wait()
        self._event.clear()


class Database:
    """One database: engine, dialect, clock and wake-up shared by the SQL providers."""

    def __init__(self, dialect: SqlDialect) -> None:
        self.dialect = dialect
        self.engine: AsyncEngine = dialect.create_engine()
        self.clock = SyncedClock()
        self.signal = WorkSignal()
        self._listener: Listener | None = None
        self._listening = False
        self._closed = False

    async def read(self, what: str, work: Work[T]) -> T:
        """Run ``work`` in a read-only transaction (one consistent snapshot).

        ``what`` names the operation in error messages ("read workflow X").
        """
        with translate_errors(self.dialect, what):
            return await uncancellable(self._transaction(work, write=False))

    async def write(self, what: str, work: Work[T], *, urgent: bool = False) -> T:
        """Run ``work`` in a write transaction: committed if it returns, else rolled back.

        Waiting for this process's write guard can be cancelled; once the transaction
        has started it runs to its end (it holds only SQL, so it is short) and a
        cancellation is delivered after it.
        """
        with translate_errors(self.dialect, what):
            async with self.dialect.write_guard(urgent=urgent):
                return await uncancellable(self._transaction(work, write=True))

    async def _transaction(self, work: Work[T], *, write: bool) -> T:
        # Runs in a task of its own (see uncancellable): a statement is never
        # interrupted half-way, which would make SQLAlchemy invalidate the connection
        # and could leave SQLite holding the write lock for an unfinalized statement.
        conn = await self.engine.connect()
        try:
            await self.dialect.begin(conn, write=write)
            result = await work(conn)
            if write:
                await conn.commit()
            return result
        finally:
            await _finish(conn)

    def observe_time(self, db_now_ms: int, started_ns: int) -> None:
        """Sync :attr:`clock` with a database time read by a statement sent at ``started_ns``
        (``time.monotonic_ns()``).

        The round trip is added, so the clock never runs behind the database: a time the
        database stores afterwards is never later than ``clock.now_ms()``.
        """
        elapsed_ms = -(-(time.monotonic_ns() - started_ns) // 1_000_000)
        self.clock.sync(db_now_ms + elapsed_ms + CLOCK_MARGIN_MS)

    async def sync_clock(self) -> None:
        """Read the database clock and sync :attr:`clock` with it."""
        started = time.monotonic_ns()

        async def read_now(conn: AsyncConnection) -> int:
            return int((await conn.execute(select(self.dialect.now_ms()))).scalar_one())

        now = await self.read("read the database clock", read_now)
        self.observe_time(now, started)

    async def ensure_listener(self) -> None:
        """Start listening for other processes' notifications, if the dialect can.

        Called before the first poll, so no notification sent meanwhile is missed.
        """
        if self.dialect.supports_notify and not self._listening:
            self._listening = True
            self._listener = await self.dialect.listen(self.signal.set)

    async def close(self) -> None:
        """Stop the listener and close every pooled connection; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        await self.engine.dispose()


async def _finish(conn: AsyncConnection) -> None:
    """Roll back whatever is still open on ``conn`` and hand it back to the pool."""
    try:
        if conn.in_transaction():
            await conn.rollback()
    except Exception:
        # The connection is in an unknown state: drop it rather than pool it.
        logger.debug("rollback failed; invalidating the connection", exc_info=True)
        await conn.invalidate()
    finally:
        await conn.close()


async def uncancellable(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` (in a task of its own) to completion even if the caller is
    cancelled meanwhile; such a cancellation is delivered once the work has ended."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the caller asked for cancellation instead
        raise asyncio.CancelledError
    return task.result()


@contextmanager
def translate_errors(dialect: SqlDialect, what: str) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into ``ProviderError`` (keeping the cause).

    Transient errors (classified by the dialect from the error code) are marked so that
    callers' retry policies can retry them.
    """
    try:
        yield
    except sa_exc.DBAPIError as exc:
        transient = dialect.is_transient(exc)
        raise ProviderError(
            f"{dialect.name}: could not {what}: {exc.orig}", transient=transient
        ) from exc
    except sa_exc.TimeoutError as exc:
        raise ProviderError(
            f"{dialect.name}: could not {what}: no free connection in the pool",
            transient=True,
        ) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise ProviderError(f"{dialect.name}: could not {what}: {exc}") from exc
