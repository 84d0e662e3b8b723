"""Wake-ups from Valkey: a supervised pub/sub subscription that wakes this host's
poller when another process adds work to a ready stream.

Like PostgreSQL's NOTIFY, a wake-up is only a hint: one missed while the connection
was down costs latency, never work, since the poll still runs every poll interval. So
the listener wakes the poller after every reconnection too (whatever was published
meanwhile is in the streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 2.0
_READ_WAIT = 1.0


class WakeListener:
    """Subscribes to ``channel`` and calls ``wake`` on each message, resubscribing with
    capped, jittered back-off when the connection is lost, until :meth:`close`."""

    def __init__(self, client: Redis, channel: str, wake: Callable[[], None]) -> None:
        self._client = client
        self._channel = channel
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._healthy = False
        self._closed = False

    def start(self) -> None:
        """Start listening (once); returns at once."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"wfe-valkey-{self._channel}")

    async def wait_subscribed(self, timeout: float) -> None:
        """Wait until the first subscription holds (for callers that must not miss the
        next message), at most ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()

    async def _listen(self) -> None:
        backoff = _FIRST_BACKOFF
        while not self._closed:
            self._healthy = False
            try:
                await self._subscription()
            except (RedisError, OSError) as exc:
                logger.warning(
                    "valkey: wake-up subscription to %s lost, retrying in %.2fs: %s",
                    self._channel,
                    backoff,
                    exc,
                )
            if self._healthy:
                backoff = _FIRST_BACKOFF  # it had worked: a fresh loss, not a flapping one
            await asyncio.sleep(backoff + random.uniform(0, _FIRST_BACKOFF))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _subscription(self) -> None:
        async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self._channel)
            if self._subscribed.is_set():
                # A resubscription: what was published while we were away is in the
                # streams (before the first one, the first claim polls anyway).
                self._wake()
            self._subscribed.set()
            self._healthy = True
            while not self._closed:
                # A bounded wait, not a blocking read: a blocking read would be cut by
                # the client's socket timeout on every quiet spell.
                message = await pubsub.get_message(timeout=_READ_WAIT)
                if message is not None:
                    self._wake()

    async def close(self) -> None:
        """Stop listening and drop the subscription's connection."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            # redis-py can swallow a cancellation that lands while it connects; the
            # flag then ends the loop at its next bounded read.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
