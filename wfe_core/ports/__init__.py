"""Ports: the small protocols providers implement. The executor depends only on these."""

from wfe_core.ports.backend import Backend
from wfe_core.ports.clock import Clock
from wfe_core.ports.lifecycle import LifecyclePublisher
from wfe_core.ports.lock import LockProvider
from wfe_core.ports.persistence import (
    DefinitionStore,
    EventStore,
    PersistenceProvider,
    WorkflowStore,
)
from wfe_core.ports.queue import LeaseStore, QueueProvider
from wfe_core.ports.search import SearchIndex

__all__ = [
    "Backend",
    "Clock",
    "DefinitionStore",
    "EventStore",
    "LeaseStore",
    "LifecyclePublisher",
    "LockProvider",
    "PersistenceProvider",
    "QueueProvider",
    "SearchIndex",
    "WorkflowStore",
]
