"""The wfe test kit: in-memory providers and a clock tests move by hand.

Use it to unit-test workflows without a database, or to prototype::

    from wfe_core.testing import FakeClock, memory_backend

    clock = FakeClock()
    backend = memory_backend(clock)   # persistence, queue, lock and search share one store
    ...
    clock.advance(31)                 # a 30-second lease or timer is now past

The in-memory providers have the semantics of the SQL stores (the provider contract
suite in ``tests/contract`` runs against both): fencing tokens, idempotency keys,
event deliveries, status compare-and-set. Nothing survives the process.
"""

from wfe_core.testing.clock import FakeClock
from wfe_core.testing.memory import (
    MemoryLock,
    MemoryPersistence,
    MemoryQueue,
    MemorySearchIndex,
    MemoryState,
    memory_backend,
)

__all__ = [
    "FakeClock",
    "MemoryLock",
    "MemoryPersistence",
    "MemoryQueue",
    "MemorySearchIndex",
    "MemoryState",
    "memory_backend",
]
