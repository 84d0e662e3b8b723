"""Queue port: hands out runnable workflows under a lease, and wakes idle hosts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wfe_core.models import Claim


class QueueProvider(Protocol):
    supports_notify: bool
    """True when other processes' enqueues wake this host (e.g. LISTEN/NOTIFY)."""

    async def claim(
        self, owner: str, limit: int, lease_seconds: float, eligible: Sequence[tuple[str, int]]
    ) -> list[Claim]:
        """Lease up to ``limit`` due workflows of the eligible (definition, version) pairs.

        Due means: RUNNABLE, ``next_execution`` <= now, and no live lease (a lease that
        expired counts as free, which is how a dead host's work is recovered). Each
        claim increments the lease token; a claim over an expired lease also increments
        ``recoveries``. Expiry is computed from the store's clock, never the host's.
        """
        ...

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> list[Claim]:
        """Extend the leases still held (same owner and token); return the renewed
        claims. A claim missing from the result was lost."""
        ...

    async def release(self, claim: Claim) -> None:
        """Give the lease up at once and make the workflow due now, so another host
        takes it without waiting for expiry. A stale claim is ignored."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work may be available (a wake-up) or after ``timeout`` seconds."""
        ...

    def wake(self) -> None:
        """Wake this process's waiters now (in-process enqueue, timer, shutdown)."""
        ...
