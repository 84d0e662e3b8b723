"""The engine and its transaction scopes, and the one seam where driver errors become
:class:`wfe_core.errors.ProviderError` and transient ones are retried.

Transactions are short and contain only SQL: a write takes the process's write guard,
starts a write transaction (``BEGIN IMMEDIATE`` on SQLite) and commits; any exit other
than success rolls back. A cancellation of the caller does not interrupt a transaction
(it is delivered when the transaction has ended, see :mod:`wfe_sql.uncancellable`), so
a cancelled task never leaves a pooled connection inside a transaction nor a statement
half-run.

Retries. A transaction that fails transiently (the dialect classifies the driver's
error code: lost connection, server restart, deadlock, busy file...) is run again from
the start, a bounded number of times with capped exponential back-off
(:class:`RetryPolicy`). Before its COMMIT was sent, a failed transaction certainly
rolled back. A failure *during* COMMIT is ambiguous: the first attempt may have landed.
Every write is therefore written to be safe to run again (a step commit recognises its
own earlier landing by its commit id; renewals and releases are conditional on the
token), and a write that is not may pass ``reconcile``, which the next attempt runs
first to find the earlier attempt's effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from wfe_core.clock import SyncedClock
from wfe_core.errors import ProviderError
from wfe_core.transient import TransientRetry, before_sleep_log, is_transient, log_retry
from wfe_sql.connection import SqlConnection, SqlEngine
from wfe_sql.dialect import Listener, SqlDialect
from wfe_sql.gate import PriorityGate
from wfe_sql.uncancellable import uncancellable

logger = logging.getLogger(__name__)

T = TypeVar("T")

Work = Callable[[SqlConnection], Awaitable[T]]
"""The SQL of one transaction: an async function of the connection."""

Reconcile = Callable[[SqlConnection], Awaitable[T | None]]
"""Looks, after a COMMIT whose outcome is unknown, for the earlier attempt's effects:
the operation's result if it landed, ``None`` if it did not."""


RetryPolicy = TransientRetry
"""How transient failures of a transaction are retried (bounded, capped back-off)."""


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


class _Attempts:
    """What the tries of one write know about their COMMITs so far."""

    __slots__ = ("committing", "unknown")

    def __init__(self) -> None:
        self.committing = False
        """The running try has sent its COMMIT and has no answer yet."""
        self.unknown = False
        """An earlier try failed during its COMMIT: it may have landed."""

    def next_try(self) -> None:
        if self.committing:
            self.unknown, self.committing = True, False


class Database:
    """One database: engine, dialect, clock and wake-up shared by the SQL providers."""

    def __init__(self, dialect: SqlDialect, retry: RetryPolicy | None = None) -> None:
        self.dialect = dialect
        self.engine: SqlEngine = dialect.create_engine()
        self.clock = SyncedClock()
        self.signal = WorkSignal()
        self.retry = retry or RetryPolicy()
        # Callers beyond the pool's capacity queue here, without a time limit, rather
        # than in the pool, whose checkout times out (pool_timeout) under a burst.
        self._connections = PriorityGate(dialect.pool_capacity)
        self._listener: Listener | None = None
        self._listening = False
        self._closed = False

    async def read(self, what: str, work: Work[T], *, single: bool = False) -> T:
        """Run ``work`` in a read-only transaction (one consistent snapshot), retried
        when it fails transiently.

        ``what`` names the operation in error messages ("read workflow X"). ``single``:
        ``work`` sends one statement, which is a snapshot by itself, so the dialect
        may send no BEGIN (see ``SqlDialect.begin``).
        """

        async def attempt() -> T:
            with translate_errors(self.dialect, what):
                async with self._connections.hold():
                    return await uncancellable(self._transaction(work, write=False, single=single))

        return await self._retrying(what, attempt)

    async def write(
        self,
        what: str,
        work: Work[T],
        *,
        urgent: bool = False,
        reconcile: Reconcile[T] | None = None,
        retry_for: float | None = None,
        single: bool = False,
    ) -> T:
        """Run ``work`` in a write transaction: committed if it returns, else rolled back;
        run again when it fails transiently (see the module's notes on retries).

        Waiting for this process's write guard can be cancelled; once the transaction
        has started it runs to its end (it holds only SQL, so it is short) and a
        cancellation is delivered after it.

        Args:
            what: names the operation in error messages and logs.
            work: the SQL; it must be safe to run again after a COMMIT whose outcome
                was unknown, unless ``reconcile`` is given.
            urgent: go before waiting ordinary writers of this process (lease upkeep).
            reconcile: run first by a try that follows a COMMIT of unknown outcome;
                a result other than ``None`` is returned instead of running ``work``.
            retry_for: start no new try after this many seconds (at most the
                policy's ``max_elapsed``): for writes that are useless when late.
            single: ``work`` writes with one statement, atomic by itself (and may
                follow it with statements that only announce it, a NOTIFY), which
                the dialect may run with no BEGIN and COMMIT (see
                ``SqlDialect.begin``); its outcome is then unknown if it fails in
                flight, so ``reconcile`` is needed as for a COMMIT.

        Raises:
            ProviderError: the database failed, and retrying did not help (or cannot).
        """
        attempts = _Attempts()

        async def attempt() -> T:
            attempts.next_try()
            with translate_errors(self.dialect, what):
                async with (
                    self.dialect.write_guard(urgent=urgent),
                    self._connections.hold(urgent=urgent),
                ):
                    return await uncancellable(
                        self._transaction(
                            work, write=True, attempts=attempts, reconcile=reconcile, single=single
                        )
                    )

        return await self._retrying(what, attempt, retry_for)

    async def _retrying(
        self, what: str, attempt: Callable[[], Awaitable[T]], retry_for: float | None = None
    ) -> T:
        """Call ``attempt`` until it succeeds, fails for good, or the policy gives up."""
        policy = self.retry
        elapsed = policy.time_budget(retry_for)
        started = time.monotonic()
        try:
            # The common case pays for no retry machinery: tenacity is set up only once
            # a first try has failed transiently.
            return await attempt()
        except ProviderError as exc:
            if not exc.transient or policy.attempts <= 1:
                raise
            first_wait = policy.first_wait + random.uniform(0, policy.first_wait)
            log_retry(logger, self.dialect.name, what, 1, first_wait, exc)
        await asyncio.sleep(first_wait)
        remaining = elapsed - (time.monotonic() - started)
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(policy.attempts - 1) | stop_after_delay(max(remaining, 0.0)),
            # Tenacity counts from the second try on: its first wait is the policy's second.
            wait=wait_exponential(multiplier=policy.first_wait * 2, max=policy.max_wait)
            + wait_random(0, policy.first_wait),
            before_sleep=before_sleep_log(logger, self.dialect.name, what, tries_before=1),
            reraise=True,
        )
        return await retrying(attempt)

    async def _transaction(
        self,
        work: Work[T],
        *,
        write: bool,
        attempts: _Attempts | None = None,
        reconcile: Reconcile[T] | None = None,
        single: bool = False,
    ) -> T:
        # Run by uncancellable: a statement is never interrupted half-way, which would
        # make SQLAlchemy invalidate the connection and could leave SQLite holding the
        # write lock for an unfinalized statement.
        conn = await self.engine.connect()
        try:
            await self.dialect.begin(conn, write=write, single=single)
            if reconcile is not None and attempts is not None and attempts.unknown:
                landed = await reconcile(conn)
                if landed is not None:
                    logger.info("an earlier attempt to commit had landed; nothing to redo")
                    return landed
            if single and attempts is not None:
                attempts.committing = True  # the statement may commit by itself
            result = await work(conn)
            if write:
                if attempts is not None:
                    attempts.committing = True
                await conn.commit()
                if attempts is not None:
                    attempts.committing = False
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

        async def read_now(conn: SqlConnection) -> int:
            return int((await conn.execute(select(self.dialect.now_ms()))).scalar_one())

        now = await self.read("read the database clock", read_now)
        self.observe_time(now, started)

    async def ensure_listener(self) -> None:
        """Start listening for other processes' notifications, if the dialect can.

        Called before the first poll, so no notification sent meanwhile is missed.
        """
        if not self.dialect.supports_notify or self._listening or self._closed:
            return
        self._listening = True
        listener = await self.dialect.listen(self.signal.set)
        if self._closed and listener is not None:
            await listener.close()  # closed while it started: do not leak it
        else:
            self._listener = listener

    async def close(self) -> None:
        """Stop the listener and close every pooled connection; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close()
        await self.engine.dispose()


async def _finish(conn: SqlConnection) -> None:
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


@contextmanager
def translate_errors(dialect: SqlDialect, what: str) -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into ``ProviderError`` (keeping the cause).

    Transient errors (classified by the dialect from the error code; a network error
    or a pool with no free connection) are marked so that the retry seam retries them.
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
    except OSError as exc:
        # Drivers raise socket errors (refused, reset, timed out) unwrapped when they
        # connect: the database is unreachable for now.
        raise ProviderError(
            f"{dialect.name}: could not {what}: database unreachable: {exc!r}", transient=True
        ) from exc
