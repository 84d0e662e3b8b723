"""A queue that carries work between hosts through Valkey streams, while the leases
(and so the fencing tokens every commit is checked against) stay in the store.

A start goes to its definition's ready stream (:mod:`wfe_valkey.streams`) and wakes
the hosts over pub/sub; a host reads up to its free slots of entries, leases those
workflows in the store by id, and acknowledges the entries. Everything else (renewal,
release, timers, event wake-ups, a dead host's leases running out) is the store's, as
it is without Valkey: its poll (:meth:`LeaseStore.claim`) still runs, whenever the
streams had nothing for this host and at least every ``sweep_interval`` seconds, and
it is what guarantees that no due workflow waits forever, even if Valkey lost every
hint (a restart without persistence, a trimmed stream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis

from wfe_core.errors import ProviderError
from wfe_core.models import Claim, WorkflowRecord
from wfe_core.ports.queue import LeaseStore, QueueProvider
from wfe_valkey.errors import valkey_errors
from wfe_valkey.streams import ReadyStreams
from wfe_valkey.wakeups import WakeListener

logger = logging.getLogger(__name__)

T = TypeVar("T")

PATIENCE = 2.0
"""Seconds a host waits for Valkey before doing without it (a paused or unreachable
server): a start is then left to the poll, a claim polls the store."""

FORGET_AFTER = 3600.0
"""Seconds after which a consumer (a host) that holds no entry and reads nothing more is
deleted from the groups, at most once per that period, so that hosts that come and go
(a deployment, an autoscaler) do not pile up in them."""

SWEEP_INTERVAL = 1.0
"""Seconds between polls of the store while the streams keep a host busy (so timers
and recovered leases are not starved by a steady stream of starts)."""


@dataclass
class QueueCounts:
    """What this queue's claims found where (for tests, logs and metrics)."""

    streamed: int = 0
    """Workflows leased because a stream entry named them."""
    swept: int = 0
    """Workflows leased by the store's poll."""
    stale: int = 0
    """Entries whose workflow was no longer due or free when read (dropped)."""


class ValkeyQueue(QueueProvider):
    """Valkey streams for starts, the store's leases for everything else.

    Args:
        client: the Valkey client (closed by whoever made it).
        prefix: the key namespace, shared by every host and client of one store.
        leases: the store's own queue: it leases, renews, releases and polls.
        reclaim_after_ms: see :class:`~wfe_valkey.streams.ReadyStreams`.
        sweep_interval: see :data:`SWEEP_INTERVAL`.
    """

    supports_notify = True

    def __init__(
        self,
        client: Redis,
        prefix: str,
        leases: LeaseStore,
        *,
        reclaim_after_ms: int = 10_000,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        self._leases = leases
        self.streams = ReadyStreams(client, prefix, reclaim_after_ms=reclaim_after_ms)
        self._wakeups = WakeListener(client, self.streams.channel, leases.wake)
        self._sweep_interval = sweep_interval
        self._last_sweep = float("-inf")
        self._last_forget = time.monotonic()
        self.counts = QueueCounts()

    async def claim(
        self, owner: str, limit: int, lease_seconds: float, eligible: Sequence[tuple[str, int]]
    ) -> list[Claim]:
        """Lease the workflows the streams name for this host, then, if the streams had
        none (or the last poll is ``sweep_interval`` old), poll the store for the rest."""
        if limit <= 0 or not eligible:
            return []
        self._wakeups.start()
        claims, streamed = await self._claim_streamed(owner, limit, lease_seconds, eligible)
        now = time.monotonic()
        if now - self._last_forget >= FORGET_AFTER:
            self._last_forget = now
            await self._forget_idle_consumers(eligible)
        if len(claims) < limit and (not streamed or now - self._last_sweep >= self._sweep_interval):
            self._last_sweep = now
            swept = await self._leases.claim(owner, limit - len(claims), lease_seconds, eligible)
            self.counts.swept += len(swept)
            claims += swept
        return claims

    async def _claim_streamed(
        self, owner: str, limit: int, lease_seconds: float, eligible: Sequence[tuple[str, int]]
    ) -> tuple[list[Claim], bool]:
        """Lease the workflows of up to ``limit`` stream entries; returns the claims and
        whether there were entries. Every entry read is acknowledged once the store has
        answered: its workflow is then leased (here or by another host), finished, or
        not due, and the poll finds it when it is. Entries whose lease failed stay
        pending, for this host's or another's next read after ``reclaim_after``."""
        entries = await _best_effort(
            "read the ready streams",
            lambda: self.streams.read(owner, limit, eligible),
            "polling the store instead",
        )
        if not entries:
            return [], False
        ids = [entry.workflow_id for entry in entries]
        claims = await self._leases.claim_ids(owner, ids, lease_seconds, eligible)
        self.counts.streamed += len(claims)
        self.counts.stale += len(entries) - len(claims)
        # Harmless if it fails: reclaimed later, the entries find their workflows
        # leased or done.
        await _best_effort(
            "acknowledge ready entries", lambda: self.streams.ack(entries), "reclaimed later"
        )
        return claims, True

    async def _forget_idle_consumers(self, eligible: Sequence[tuple[str, int]]) -> None:
        gone = await _best_effort(
            "forget idle consumers",
            lambda: self.streams.forget_idle_consumers(eligible, int(FORGET_AFTER * 1000)),
            "tried again in an hour",
        )
        if gone:
            logger.info("valkey: forgot %d consumers idle for %gs", gone, FORGET_AFTER)

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> list[Claim]:
        """Extend the leases still held, in the store."""
        return await self._leases.renew(claims, lease_seconds)

    async def release(self, claim: Claim) -> None:
        """Give the lease up in the store (which makes the workflow due at once)."""
        await self._leases.release(claim)

    async def enqueue(self, record: WorkflowRecord) -> None:
        """Add a new workflow to its definition's ready stream and wake the hosts.

        A failure is logged, not raised: the workflow is stored, and the poll finds it.
        """
        await _best_effort(
            f"enqueue workflow {record.id}",
            lambda: self.streams.add(record.definition_id, record.version, record.id),
            "it is stored, and a host's poll will find it",
        )

    async def wait_for_work(self, timeout: float) -> None:
        """Return on a wake-up (Valkey, the store's own, or this process's) or after
        ``timeout`` seconds."""
        self._wakeups.start()
        await self._leases.wait_for_work(timeout)

    def wake(self) -> None:
        """Wake this process's waiters now."""
        self._leases.wake()

    async def listen(self, timeout: float = PATIENCE) -> None:
        """Subscribe to wake-ups now and wait (at most ``timeout`` seconds) until the
        subscription holds, so that no enqueue made afterwards goes unheard."""
        self._wakeups.start()
        await self._wakeups.wait_subscribed(timeout)

    async def close(self) -> None:
        """Stop the wake-up subscription."""
        await self._wakeups.close()


async def _best_effort(what: str, operation: Callable[[], Awaitable[T]], instead: str) -> T | None:
    """Run a Valkey operation the queue can do without, for at most :data:`PATIENCE`
    seconds; ``None`` (and a warning saying what happens ``instead``) when it failed."""
    try:
        with valkey_errors(what):
            async with asyncio.timeout(PATIENCE):
                return await operation()
    except (ProviderError, TimeoutError) as exc:
        # A ProviderError's message already says "valkey: could not <what>: <why>".
        reason = (
            exc
            if isinstance(exc, ProviderError)
            else f"valkey: could not {what}: no answer within {PATIENCE:g}s"
        )
        logger.warning("%s; %s", reason, instead)
        return None
