"""A backend: the set of providers one database URL gives."""

from __future__ import annotations

from dataclasses import dataclass

from wfe_core.ports.lock import LockProvider
from wfe_core.ports.persistence import PersistenceProvider
from wfe_core.ports.queue import QueueProvider
from wfe_core.ports.search import SearchIndex


@dataclass
class Backend:
    """Providers that share one store. ``close()`` closes the store once."""

    persistence: PersistenceProvider
    queue: QueueProvider
    lock: LockProvider
    search: SearchIndex | None = None

    async def close(self) -> None:
        await self.persistence.close()
