"""In-memory named locks with leases and fencing tokens."""

from __future__ import annotations

from wfe_core.errors import LeaseLost
from wfe_core.models import Lease
from wfe_core.ports.clock import Clock
from wfe_core.ports.lock import LockProvider
from wfe_core.testing.memory.state import LockRow, MemoryState, seconds_to_ms


class MemoryLock(LockProvider):
    """A :class:`~wfe_core.ports.LockProvider` over the in-memory store.

    A lock is free when never taken, released, or expired by the store's clock. Its
    token grows on every acquisition, across holders, and is what renew and release
    check: an expired lease nobody took over can still be renewed by its holder.

    Args:
        state: the store holding the locks (share it with the other providers).
        clock: the clock of a new state (only when ``state`` is omitted).
    """

    def __init__(self, state: MemoryState | None = None, *, clock: Clock | None = None) -> None:
        if state is not None and clock is not None:
            raise ValueError("pass either a state or a clock, not both: the state has a clock")
        self.state = state if state is not None else MemoryState(clock)

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> Lease | None:
        """Take the lock if it is free or expired (or already ``owner``'s, which gets
        a new token); ``None`` if someone else holds it."""
        now = self.state.now_ms()
        row = self.state.locks.get(name)
        if row is None:
            row = self.state.locks[name] = LockRow(owner=None, token=0, expires_at=None)
        held = row.owner is not None and row.expires_at is not None and row.expires_at > now
        if held and row.owner != owner:
            return None
        row.owner = owner
        row.token += 1
        row.expires_at = now + seconds_to_ms(ttl_seconds)
        return Lease(name=name, owner=owner, token=row.token, expires_at=row.expires_at)

    async def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend a held lease and return it with its new expiry.

        Raises:
            LeaseLost: the lock was released or taken over (token or owner differ).
        """
        row = self.state.locks.get(lease.name)
        if row is None or (row.owner, row.token) != (lease.owner, lease.token):
            raise LeaseLost(lease.name, lease.token)
        row.expires_at = self.state.now_ms() + seconds_to_ms(ttl_seconds)
        return Lease(
            name=lease.name, owner=lease.owner, token=lease.token, expires_at=row.expires_at
        )

    async def release(self, lease: Lease) -> None:
        """Free the lock if this lease still holds it; otherwise do nothing."""
        row = self.state.locks.get(lease.name)
        if row is not None and (row.owner, row.token) == (lease.owner, lease.token):
            row.owner = None
            row.expires_at = None
