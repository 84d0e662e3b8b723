"""A supervised ``LISTEN`` on a dedicated connection, outside the pool.

NOTIFY is a hint and the poll is the guarantee (RELIABILITY §9.6): a lost notification
only delays work until the next poll. The listener keeps that delay rare:

* ``LISTEN`` is registered before the listener reports itself ready, so a host that
  then polls misses nothing sent in between;
* when its connection dies (``pg_terminate_backend``, a server restart, a network
  failure found by the periodic ping) it reconnects with capped exponential back-off;
* on every reconnect (and on a first connect that comes after :meth:`start` gave up
  waiting) it wakes the host once, since notifications sent while it was not
  listening are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from wfe_sql.dialect import Listener

logger = logging.getLogger(__name__)

Connect = Callable[[], Awaitable[asyncpg.Connection]]

_LINK_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What a dead or unreachable server raises (socket errors, FATAL messages, a closed
connection); ``TimeoutError`` is an ``OSError``."""


class PostgresListener(Listener):
    """Calls ``wake`` for every notification on ``channel`` (except those whose payload
    is ``ignore``: this process's own), and once per reconnect."""

    def __init__(
        self,
        connect: Connect,
        channel: str,
        wake: Callable[[], None],
        *,
        ignore: str | None = None,
        ping_interval: float = 10.0,
        ping_timeout: float = 5.0,
        first_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._wake = wake
        self._ignore = ignore
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self.connects = 0
        """How many times LISTEN was registered (1 + reconnects)."""

    @property
    def server_pid(self) -> int | None:
        """The server process of the current LISTEN connection (``None`` between two)."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    @property
    def listening(self) -> bool:
        """Whether LISTEN is registered on a live connection right now."""
        return self.server_pid is not None

    async def start(self) -> None:
        """Start the supervisor; return once LISTEN is registered, or once the first
        connection attempt failed (the supervisor keeps trying, and polls cover)."""
        self._task = asyncio.create_task(self._supervise(), name="wfe-pg-listener")
        await self._tried.wait()

    async def close(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self) -> None:
        delay = self._first_backoff
        try:
            while True:
                try:
                    conn = await self._connect()
                except Exception as exc:
                    # Polls go on meanwhile; keep trying, and say why (with the traceback
                    # when it is not the server being away).
                    logger.warning(
                        "LISTEN connection failed, retrying in %.1fs: %r",
                        delay,
                        exc,
                        exc_info=not isinstance(exc, _LINK_ERRORS),
                    )
                    self._tried.set()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_backoff)
                    continue
                try:
                    await self._serve(conn)
                    delay = self._first_backoff
                except _LINK_ERRORS as exc:
                    logger.warning("LISTEN connection lost, reconnecting: %r", exc)
                finally:
                    self._conn = None
                    await _discard(conn)
                # Lost after it worked: a short pause, so a flapping server is no hot loop.
                await asyncio.sleep(delay)
        finally:
            self._tried.set()

    async def _serve(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` until it dies (told by asyncpg, or found by a ping)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(self._channel, self._on_notification)
        self._conn = conn
        self.connects += 1
        if self._tried.is_set():
            # start() has returned, so the host may have polled while we were not
            # listening: what was notified meanwhile is lost, and one poll finds it.
            # (On the first connect, start()'s caller polls next anyway.)
            self._wake()
        self._tried.set()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_interval):
                    await lost.wait()
            if not lost.is_set():
                # A silent network failure leaves the socket open: ask the server.
                await conn.execute("SELECT 1", timeout=self._ping_timeout)
        logger.warning("LISTEN connection closed by the server, reconnecting")

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._ignore:
            self._wake()


async def _discard(conn: asyncpg.Connection) -> None:
    """Close ``conn`` politely if it still works, else drop its socket."""
    if conn.is_closed():
        return
    try:
        await conn.close(timeout=2)
    except _LINK_ERRORS:
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
