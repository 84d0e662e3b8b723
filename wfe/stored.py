"""Which definition a host runs a claimed workflow with, and which workflows it claims.

A workflow started from a definition built from a text source carries the digest of
that source (stored with it). It runs against that source: the host's registered
definition when it was built from the same text, else the definition rebuilt from the
stored text (see :mod:`wfe.sources`), kept in a small per-host cache. A workflow
without a digest runs with the registered definition, as always.

A host made with ``serve_stored_definitions=True`` also claims the workflows of the
(id, version) pairs it never registered whose stored source it can rebuild, learnt
from :meth:`~wfe_core.ports.DefinitionStore.pinned_definitions` at start and then at
most every :data:`PINNED_REFRESH` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from pydantic import BaseModel

from wfe import sources
from wfe.registry import Registry
from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import DefinitionError, ProviderError, SourceNotFound
from wfe_core.executor.run import DefinitionUnavailable
from wfe_core.models import WorkflowRecord
from wfe_core.ports import PersistenceProvider

log = logging.getLogger("wfe.host")

CACHE_SIZE = 256
"""Definitions rebuilt from stored sources that a host keeps (least recently used go)."""

PINNED_REFRESH = 5.0
"""Seconds between two reads of the pinned sources by a host that serves them."""


class StoredDefinitions:
    """Resolves claimed workflows to definitions, and lists what the host may claim.

    Args:
        registry: the host's registered definitions.
        persistence: the store the sources are read from.
        serve: also claim workflows of unregistered definitions whose stored source
            a loader can rebuild.
    """

    def __init__(
        self,
        registry: Registry,
        persistence: PersistenceProvider,
        *,
        serve: bool = False,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._registry = registry
        self._persistence = persistence
        self.serve = serve
        self._cache: OrderedDict[str, WorkflowDefinition] = OrderedDict()
        self._cache_size = cache_size
        self._building = asyncio.Lock()
        self._served: frozenset[tuple[str, int]] = frozenset()
        self._kinds: dict[str, str] = {}  # digest -> kind, of the pinned sources
        self._refreshed_at: float | None = None

    async def resolve(self, record: WorkflowRecord) -> WorkflowDefinition | None:
        """The definition to run ``record`` with; ``None`` if this host has none.

        Raises:
            DefinitionUnavailable: its stored source cannot be read back or rebuilt
                (missing, no loader for its kind, the loader fails or builds another
                definition): the workflow cannot run anywhere this way.
            ProviderError: the store failed (the run is retried later).
        """
        registered = self._registered_for(record)
        digest = record.source_digest
        if registered is not None or digest is None:
            return registered
        cached = self._cached(digest)
        if cached is not None:
            return cached
        async with self._building:  # one rebuild per source, however many runs need it
            cached = self._cached(digest)
            if cached is None:
                cached = await self._rebuild(record, digest)
                self._cache[digest] = cached
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return cached

    def data_type(self, record: WorkflowRecord) -> type[BaseModel] | None:
        """The data model ``record`` runs with, if this host knows it without a read:
        its registered definition's, or that of the one rebuilt from its source."""
        registered = self._registered_for(record)
        if registered is not None:
            return registered.data_type
        digest = record.source_digest
        rebuilt = None if digest is None else self._cache.get(digest)
        return None if rebuilt is None else rebuilt.data_type

    def _registered_for(self, record: WorkflowRecord) -> WorkflowDefinition | None:
        """The registered definition, if ``record`` runs with it: it has no source
        digest, or the registered one was built from that very source."""
        registered = self._registry.get(record.definition_id, record.version)
        digest = record.source_digest
        if registered is None or digest is None:
            return registered
        source = registered.source
        return registered if source is not None and source.digest == digest else None

    def _cached(self, digest: str) -> WorkflowDefinition | None:
        definition = self._cache.get(digest)
        if definition is not None:
            self._cache.move_to_end(digest)
        return definition

    async def _rebuild(self, record: WorkflowRecord, digest: str) -> WorkflowDefinition:
        try:
            source = await self._persistence.get_source(digest)
            definition = sources.load_source(source, record.definition_id, record.version)
        except (SourceNotFound, DefinitionError) as exc:
            raise DefinitionUnavailable(str(exc)) from exc
        log.info(
            "rebuilt workflow definition %r v%d from its stored source %s (kind %r)",
            record.definition_id,
            record.version,
            digest[:12],
            source.kind,
        )
        return definition

    def eligible(self) -> list[tuple[str, int]]:
        """The (id, version) pairs to claim: registered, and served from the store."""
        registered = self._registry.keys()
        if not self._served:
            return registered
        return sorted(self._served.union(registered))

    async def refresh(self, *, force: bool = False) -> None:
        """Learn which stored sources unfinished workflows need (when serving them);
        at most every :data:`PINNED_REFRESH` seconds unless ``force``. A store failure
        is logged and the previous set kept."""
        now = time.monotonic()
        if not self.serve or (
            not force
            and self._refreshed_at is not None
            and now - self._refreshed_at < PINNED_REFRESH
        ):
            return
        self._refreshed_at = now
        try:
            pinned = await self._persistence.pinned_definitions()
            kinds = {digest: await self._kind_of(digest) for _, _, digest in pinned}
        except ProviderError as exc:
            log.warning("could not list the stored definitions to serve: %s", exc)
            return
        self._kinds = {d: k for d, k in kinds.items() if k is not None}
        self._served = frozenset(
            (definition_id, version)
            for definition_id, version, digest in pinned
            if digest in self._kinds and sources.has_source_loader(self._kinds[digest])
        )

    async def _kind_of(self, digest: str) -> str | None:
        """The kind of a stored source (read once: sources never change)."""
        kind = self._kinds.get(digest)
        if kind is not None:
            return kind
        try:
            return (await self._persistence.get_source(digest)).kind
        except SourceNotFound:
            return None


__all__ = ["CACHE_SIZE", "PINNED_REFRESH", "StoredDefinitions"]
