"""Queue port: hands out runnable workflows under a lease, and wakes idle hosts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from wfe_core.models import Claim, WorkflowRecord


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

    async def enqueue(self, record: WorkflowRecord) -> None:
        """Hand a workflow just stored due and unleased (a start) to the hosts that
        serve its definition. A queue that is the store's own table has nothing to do:
        the row is the entry, and the store announces it (NOTIFY) as it writes it."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work may be available (a wake-up) or after ``timeout`` seconds."""
        ...

    def wake(self) -> None:
        """Wake this process's waiters now (in-process enqueue, timer, shutdown)."""
        ...


@runtime_checkable
class LeaseStore(QueueProvider, Protocol):
    """A queue that keeps the leases itself, next to the workflows (the store's table),
    and so can also lease workflows named by id: what a queue that only carries ids
    (Valkey streams) needs underneath, since the lease token in the store is the fence
    every commit is checked against."""

    async def claim_ids(
        self,
        owner: str,
        workflow_ids: Sequence[str],
        lease_seconds: float,
        eligible: Sequence[tuple[str, int]],
    ) -> list[Claim]:
        """Lease those of ``workflow_ids`` that are due now, of an eligible pair, and
        free (as :meth:`claim` judges them); the others are left as they are. A
        workflow leased by someone else, finished, not yet due or unknown is skipped."""
        ...
