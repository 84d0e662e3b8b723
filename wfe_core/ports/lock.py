"""Lock port: named leases with fencing tokens, for singleton background jobs."""

from __future__ import annotations

from typing import Protocol

from wfe_core.models import Lease


class LockProvider(Protocol):
    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> Lease | None:
        """Take the lock if it is free or expired; ``None`` if someone else holds it.

        The token grows on every acquisition of the same name, across holders.
        """
        ...

    async def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend a held lease; raise ``LeaseLost`` if it is no longer ours."""
        ...

    async def release(self, lease: Lease) -> None:
        """Free the lock if we still hold it (checked by token); otherwise do nothing."""
        ...
