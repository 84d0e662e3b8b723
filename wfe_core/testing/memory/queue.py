"""In-memory queue: leases due workflows of a :class:`MemoryState` to hosts."""

from __future__ import annotations

from collections.abc import Sequence

from wfe_core.models import Claim, WorkflowRecord, WorkflowStatus
from wfe_core.ports.clock import Clock
from wfe_core.ports.queue import LeaseStore
from wfe_core.testing.memory.state import MemoryState, seconds_to_ms


class MemoryQueue(LeaseStore):
    """A :class:`~wfe_core.ports.LeaseStore` over the in-memory store.

    ``supports_notify`` is ``False``, as for SQLite: nothing outside this process can
    enqueue, so hosts must keep polling for timers. Within the process every write
    that makes work due (create, event, resume, release) wakes waiters at once.

    Args:
        state: the store to lease from (share it with a :class:`MemoryPersistence`).
        clock: the clock of a new state (only when ``state`` is omitted).
    """

    supports_notify: bool = False

    def __init__(self, state: MemoryState | None = None, *, clock: Clock | None = None) -> None:
        if state is not None and clock is not None:
            raise ValueError("pass either a state or a clock, not both: the state has a clock")
        self.state = state if state is not None else MemoryState(clock)

    async def claim(
        self, owner: str, limit: int, lease_seconds: float, eligible: Sequence[tuple[str, int]]
    ) -> list[Claim]:
        """Lease up to ``limit`` due workflows of the eligible (definition, version)
        pairs, earliest ``next_execution`` first.

        Due: RUNNABLE, ``next_execution <= now`` and no live lease. Each claim
        increments the token; taking over an expired lease also increments
        ``recoveries``. An empty ``eligible`` claims nothing.
        """
        s = self.state
        now = s.now_ms()
        wanted = set(eligible)
        due = [
            r
            for r in s.workflows.values()
            if (r.definition_id, r.version) in wanted and _is_due(r, now)
        ]
        due.sort(key=lambda r: (r.next_execution or 0, s.sequence[r.id]))
        return self._lease(due[: max(limit, 0)], owner, lease_seconds, now)

    async def claim_ids(
        self,
        owner: str,
        workflow_ids: Sequence[str],
        lease_seconds: float,
        eligible: Sequence[tuple[str, int]],
    ) -> list[Claim]:
        """Lease those of ``workflow_ids`` that are due, eligible and free."""
        s = self.state
        now = s.now_ms()
        wanted = set(eligible)
        records = (s.workflows.get(workflow_id) for workflow_id in dict.fromkeys(workflow_ids))
        due = [
            r
            for r in records
            if r is not None and (r.definition_id, r.version) in wanted and _is_due(r, now)
        ]
        return self._lease(due, owner, lease_seconds, now)

    def _lease(
        self, records: list[WorkflowRecord], owner: str, lease_seconds: float, now: int
    ) -> list[Claim]:
        expires_at = now + seconds_to_ms(lease_seconds)
        claims = []
        for record in records:
            if record.lease_owner is not None:
                # The previous owner's lease ran out without a release: a recovery.
                record.recoveries += 1
            record.lease_owner = owner
            record.lease_token += 1
            record.lease_expires_at = expires_at
            claims.append(
                Claim(
                    workflow_id=record.id,
                    owner=owner,
                    token=record.lease_token,
                    expires_at=expires_at,
                    db_now=now,
                    recoveries=record.recoveries,
                )
            )
        return claims

    async def renew(self, claims: Sequence[Claim], lease_seconds: float) -> list[Claim]:
        """Extend the leases still held (same owner and token) and return them with
        their new expiry; a claim missing from the result was lost."""
        s = self.state
        now = s.now_ms()
        expires_at = now + seconds_to_ms(lease_seconds)
        renewed = []
        for claim in claims:
            record = s.workflows.get(claim.workflow_id)
            if record is None or not _holds(record, claim):
                continue
            record.lease_expires_at = expires_at
            renewed.append(
                Claim(
                    workflow_id=claim.workflow_id,
                    owner=claim.owner,
                    token=claim.token,
                    expires_at=expires_at,
                    db_now=now,
                    recoveries=record.recoveries,
                )
            )
        return renewed

    async def release(self, claim: Claim) -> None:
        """Give the lease up and make the workflow due now; a stale claim is ignored."""
        record = self.state.workflows.get(claim.workflow_id)
        if record is None or not _holds(record, claim):
            return
        record.lease_owner = None
        record.lease_expires_at = None
        record.next_execution = self.state.now_ms()
        self.state.wake()

    async def enqueue(self, record: WorkflowRecord) -> None:
        """Nothing to do: the store is the queue, and its writes wake waiters."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return after a wake-up (including one made before the call) or ``timeout``
        seconds, whichever comes first."""
        await self.state.wait_for_work(timeout)

    def wake(self) -> None:
        """Wake every host waiting on this store now."""
        self.state.wake()


def _holds(record: WorkflowRecord, claim: Claim) -> bool:
    return (record.lease_owner, record.lease_token) == (claim.owner, claim.token)


def _is_due(record: WorkflowRecord, now: int) -> bool:
    return (
        record.status is WorkflowStatus.RUNNABLE
        and record.next_execution is not None
        and record.next_execution <= now
        and (
            record.lease_owner is None
            or record.lease_expires_at is None
            or record.lease_expires_at <= now
        )
    )
