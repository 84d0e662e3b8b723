"""Persistence ports: workflow instances, events, definitions.

Every write that an executor makes while it owns a workflow goes through
:meth:`WorkflowStore.commit`, which is conditional on the lease token (fencing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wfe_core.models import (
    Claim,
    DefinitionRecord,
    DefinitionSourceRecord,
    Event,
    EventSubscription,
    ExecutionPointer,
    NewWorkflow,
    StepCommit,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowState,
    WorkflowStatus,
)


class WorkflowStore(Protocol):
    async def create_workflow(self, new: NewWorkflow) -> tuple[WorkflowRecord, bool]:
        """Insert a workflow and its first pointers in one transaction.

        If ``new.idempotency_key`` is already used, insert nothing and return the
        existing record with ``False``; otherwise return the new record with ``True``.
        Safe under concurrent calls with the same key (exactly one row is created).

        A child (``new.parent_id`` set) is created only if, in the same transaction,
        its parent exists and is RUNNABLE or SUSPENDED; else nothing is inserted and
        ``NotFound`` (no such parent) or ``InvalidStateTransition`` (a finished one)
        is raised, unless the idempotency key is taken (its workflow is returned).
        Against a concurrent terminate of the parent, the child is either refused
        or terminated by the cascade: never left open under a TERMINATED parent.

        A ``new.source_digest`` must name a stored source (see
        :meth:`DefinitionStore.save_definition`), checked in the same transaction;
        else nothing is inserted and ``SourceNotFound`` is raised (unless the
        idempotency key is taken: its workflow is returned). Stored sources are never
        deleted, so the check cannot be undone by a concurrent writer.

        With ``new.lease``, a created workflow is stored leased to its owner (token
        1, expiry by the store's clock, as a claim would make it), and idle hosts
        are not woken for it; :meth:`Claim.of_created` gives the claim.
        """
        ...

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """Return the record; raise ``NotFound`` for an unknown or malformed id."""
        ...

    async def get_workflows(
        self, workflow_ids: Sequence[str], *, finished_only: bool = False
    ) -> list[WorkflowRecord]:
        """The records of those ids that exist (only COMPLETE, FAILED or TERMINATED ones
        when ``finished_only``), in no particular order; unknown or malformed ids are
        left out. One read for many waiters (see ``wfe.completion``)."""
        ...

    async def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRecord]:
        """Records matching the filters, newest first."""
        ...

    async def get_pointers(self, workflow_id: str) -> list[ExecutionPointer]:
        """Every pointer of the workflow, oldest first; ``NotFound`` if unknown."""
        ...

    async def load_state(self, claim: Claim) -> WorkflowState:
        """Load the record, pointers and open subscriptions of a claimed workflow.

        Raises ``LeaseLost`` if the claim's token is no longer current.
        """
        ...

    async def load_states(self, claims: Sequence[Claim]) -> dict[str, WorkflowState]:
        """:meth:`load_state` for a batch of claims in one read, keyed by workflow id;
        a claim whose token is no longer current is left out."""
        ...

    async def commit(self, commit: StepCommit) -> WorkflowStatus:
        """Apply one step transition atomically, fenced by ``(owner, token)``.

        Writes data, status, error, next_execution (``complete_time`` is set by the
        store's clock when the status becomes finished), inserts and updates pointers,
        subscriptions, deliveries and error records, and clears the lease when
        ``commit.release``. It resets ``recoveries`` to 0: the workflow made progress,
        so only consecutive crashes count towards crash-loop protection.

        The condition is: token and owner match and the status is RUNNABLE or
        SUSPENDED. Returns the status after the write (a SUSPENDED result tells the
        executor to stop scheduling new steps). Raises ``LeaseLost`` when the condition
        fails; then nothing is written. A repeated delivery of the same event to the
        same workflow violates a unique key and raises ``ProviderError``.
        """
        ...

    async def set_status(
        self,
        workflow_id: str,
        action: str,
        allowed_from: frozenset[WorkflowStatus],
        to: WorkflowStatus,
    ) -> WorkflowRecord:
        """Control operation (suspend/resume/terminate) as a compare-and-set.

        Raises ``NotFound`` or ``InvalidStateTransition`` (naming ``action``). A move to
        RUNNABLE sets ``next_execution`` to now; a move to a finished status sets
        ``complete_time`` and clears the lease, so the owner's next commit is fenced off.
        """
        ...

    async def purge(self, older_than_ms: int, statuses: frozenset[WorkflowStatus]) -> int:
        """Delete finished workflows completed before the time, with their rows.

        Deletes in bounded batches; returns the number of workflows deleted.
        """
        ...


class EventStore(Protocol):
    async def publish_event(self, name: str, key: str, data_json: str) -> Event:
        """Store an event (time from the store clock) and make every workflow with a
        matching subscription due now, in one transaction."""
        ...

    async def find_events(
        self, workflow_id: str, subscriptions: list[EventSubscription]
    ) -> dict[str, Event]:
        """For each subscription id, the earliest matching event (same name and key,
        ``event_time >= as_of``) not yet delivered to this workflow."""
        ...


class DefinitionStore(Protocol):
    async def save_definition(
        self, record: DefinitionRecord, source: DefinitionSourceRecord | None = None
    ) -> None:
        """Record (insert or update) a definition a host registered, in one transaction
        with its source.

        With ``source``, the source is stored unless its digest already is (sources
        are immutable: a second save of one digest changes nothing, ``created_at``
        included) and the definition's ``source_digest`` becomes ``source.digest``.
        Without it, ``record.source_digest`` is kept as given (``None`` for a
        definition built in code).

        Raises:
            ProviderError: ``source.digest`` is not the digest of its content, or
                ``record.source_digest`` names another one; nothing is written.
            SourceNotFound: ``record.source_digest`` names no stored source and no
                ``source`` is given; nothing is written.
        """
        ...

    async def get_definition(self, definition_id: str, version: int | None) -> DefinitionRecord:
        """The recorded definition (latest version when ``version`` is None), with the
        ``source_digest`` it was last saved with.

        Raises ``DefinitionNotFound``.
        """
        ...

    async def get_source(self, digest: str) -> DefinitionSourceRecord:
        """The stored source with this digest.

        Raises ``SourceNotFound``.
        """
        ...

    async def pinned_definitions(self) -> list[tuple[str, int, str]]:
        """The distinct ``(definition_id, version, source_digest)`` of the RUNNABLE or
        SUSPENDED workflows that have a source digest: the stored sources a worker
        must be able to rebuild to serve them. Cheap enough to call every few seconds.
        """
        ...


class PersistenceProvider(WorkflowStore, EventStore, DefinitionStore, Protocol):
    """The whole store. ``migrate()`` creates/updates the schema; ``close()`` frees it."""

    async def migrate(self) -> None: ...

    async def close(self) -> None: ...

    def now_ms(self) -> int:
        """The store's clock estimate (database time for SQL stores)."""
        ...
