"""In-memory providers that share one :class:`MemoryState`, like tables of one database."""

from __future__ import annotations

from wfe_core.ports.backend import Backend
from wfe_core.ports.clock import Clock
from wfe_core.testing.memory.lock import MemoryLock
from wfe_core.testing.memory.persistence import MemoryPersistence
from wfe_core.testing.memory.queue import MemoryQueue
from wfe_core.testing.memory.search import MemorySearchIndex
from wfe_core.testing.memory.state import MemoryState


def memory_backend(clock: Clock | None = None) -> Backend:
    """A complete in-memory :class:`~wfe_core.ports.Backend` over one fresh store.

    Args:
        clock: the store's clock for every stored time; defaults to the system
            clock. With a :class:`~wfe_core.testing.FakeClock`, tests expire leases
            and fire timers with ``clock.advance(...)`` instead of sleeping.

    Returns:
        A backend whose persistence, queue and lock share one :class:`MemoryState`
        (reachable as ``backend.persistence.state``), plus a search index.
    """
    state = MemoryState(clock)
    return Backend(
        persistence=MemoryPersistence(state),
        queue=MemoryQueue(state),
        lock=MemoryLock(state),
        search=MemorySearchIndex(),
    )


__all__ = [
    "MemoryLock",
    "MemoryPersistence",
    "MemoryQueue",
    "MemorySearchIndex",
    "MemoryState",
    "memory_backend",
]
