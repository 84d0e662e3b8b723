"""In-memory persistence: workflows, pointers, events and definitions in a dict store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wfe_core.errors import (
    DefinitionNotFound,
    InvalidStateTransition,
    LeaseLost,
    NotFound,
    ProviderError,
    SourceNotFound,
)
from wfe_core.models import (
    FINISHED_STATUSES,
    Claim,
    DefinitionRecord,
    DefinitionSourceRecord,
    Event,
    EventSubscription,
    ExecutionError,
    ExecutionPointer,
    NewWorkflow,
    StepCommit,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowState,
    WorkflowStatus,
    saved_source_digest,
)
from wfe_core.ports.clock import Clock
from wfe_core.ports.persistence import PersistenceProvider
from wfe_core.testing.memory import children, events
from wfe_core.testing.memory.state import MemoryState, copy_json, copy_record

_COMMITTABLE = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})
_UNFINISHED = _COMMITTABLE


@dataclass
class _Writes:
    """The checked, copied rows of one commit, ready to store."""

    pointers: list[ExecutionPointer]  # new ones first, then updates (creation order kept)
    subscriptions: dict[str, EventSubscription]  # the workflow's complete new set
    deliveries: list[tuple[str, str]]
    errors: list[ExecutionError]


class MemoryPersistence(PersistenceProvider):
    """A :class:`~wfe_core.ports.PersistenceProvider` kept in process memory.

    Same semantics as the SQL stores (the contract suite runs against both): commits
    fenced by ``(owner, token)``, idempotency keys, event deliveries recorded once,
    status changes as compare-and-set. Nothing survives the process.

    Args:
        state: the tables to use; share one :class:`MemoryState` with a
            :class:`MemoryQueue` and :class:`MemoryLock` so they see one store.
            A new one is made when omitted.
        clock: the clock of a new state (only when ``state`` is omitted).
    """

    def __init__(self, state: MemoryState | None = None, *, clock: Clock | None = None) -> None:
        if state is not None and clock is not None:
            raise ValueError("pass either a state or a clock, not both: the state has a clock")
        self.state = state if state is not None else MemoryState(clock)

    async def migrate(self) -> None:
        """Nothing to create: the tables exist from the start."""

    async def close(self) -> None:
        """Nothing to free; the data stays readable until the object is dropped."""

    def now_ms(self) -> int:
        """The store's clock (the injected one)."""
        return self.state.now_ms()

    async def create_workflow(self, new: NewWorkflow) -> tuple[WorkflowRecord, bool]:
        """Insert a workflow and its pointers, or return the one holding the same
        idempotency key with ``False``.

        A child (``parent_id`` set) is only created under a RUNNABLE or SUSPENDED
        parent; the idempotency key is looked up first, so a retried start still
        finds its child after the parent finished.

        Raises:
            ProviderError: the id is taken, or two pointers share an id.
            InvalidData: the data or a pointer is not JSON.
            NotFound: ``parent_id`` names no workflow.
            InvalidStateTransition: the parent is finished.
            SourceNotFound: ``source_digest`` names no stored source.
        """
        s = self.state
        if new.idempotency_key is not None:
            existing = s.idempotency.get(new.idempotency_key)
            if existing is not None:
                return copy_record(s.workflows[existing]), False
        if new.parent_id is not None:
            children.check_parent(s, new.parent_id)
        if new.source_digest is not None and new.source_digest not in s.sources:
            raise SourceNotFound(new.source_digest, new.definition_id, new.version)
        if new.id in s.workflows:
            raise ProviderError(f"workflow id {new.id!r} already exists")
        events.parse_json(new.data, f"data of workflow {new.id}")
        pointers = [copy_json(p) for p in new.pointers]
        _check_unique([p.id for p in pointers], set(), f"pointer of workflow {new.id}")
        now = s.now_ms()
        record = WorkflowRecord(
            id=new.id,
            definition_id=new.definition_id,
            version=new.version,
            reference=new.reference,
            idempotency_key=new.idempotency_key,
            status=WorkflowStatus.RUNNABLE,
            data=new.data,
            create_time=now,
            next_execution=new.next_execution,
            parent_id=new.parent_id,
            source_digest=new.source_digest,
        )
        if new.lease is not None:
            record.lease_owner = new.lease.owner
            record.lease_token = 1
            record.lease_expires_at = now + max(int(new.lease.seconds * 1000), 1)
        s.workflows[new.id] = record
        s.sequence[new.id] = s.next_sequence()
        s.pointers[new.id] = {p.id: p for p in pointers}
        s.subscriptions[new.id] = {}
        s.errors[new.id] = []
        if new.idempotency_key is not None:
            s.idempotency[new.idempotency_key] = new.id
        if new.awaits_claim:
            s.wake()
        return copy_record(record), True

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        """Return the record; raise ``NotFound`` for an unknown or malformed id."""
        return copy_record(self._record(workflow_id))

    async def get_workflows(
        self, workflow_ids: Sequence[str], *, finished_only: bool = False
    ) -> list[WorkflowRecord]:
        """The records of those ids that exist (finished ones only, if asked)."""
        found = (self.state.workflows.get(i) for i in dict.fromkeys(workflow_ids))
        return [
            copy_record(r)
            for r in found
            if r is not None and (not finished_only or r.status in FINISHED_STATUSES)
        ]

    async def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRecord]:
        """Records matching the filters, newest first, then ``offset``/``limit``."""
        s = self.state
        matching = [
            r
            for r in s.workflows.values()
            if (query.status is None or r.status is query.status)
            and (query.definition_id is None or r.definition_id == query.definition_id)
            and (query.reference is None or r.reference == query.reference)
        ]
        matching.sort(key=lambda r: (r.create_time, s.sequence[r.id]), reverse=True)
        start = max(query.offset, 0)
        return [copy_record(r) for r in matching[start : start + max(query.limit, 0)]]

    async def get_pointers(self, workflow_id: str) -> list[ExecutionPointer]:
        """Every pointer of the workflow, oldest first; ``NotFound`` if unknown."""
        self._record(workflow_id)
        return [copy_record(p) for p in self.state.pointers[workflow_id].values()]

    async def load_states(self, claims: Sequence[Claim]) -> dict[str, WorkflowState]:
        """:meth:`load_state` of each claim still held, keyed by workflow id."""
        states = {}
        for claim in claims:
            try:
                states[claim.workflow_id] = await self.load_state(claim)
            except LeaseLost:
                continue
        return states

    async def load_state(self, claim: Claim) -> WorkflowState:
        """The record, pointers and open subscriptions of a claimed workflow.

        Raises:
            LeaseLost: the claim's owner and token are no longer the lease's.
        """
        s = self.state
        record = s.workflows.get(claim.workflow_id)
        if record is None or (record.lease_owner, record.lease_token) != (
            claim.owner,
            claim.token,
        ):
            raise LeaseLost(claim.workflow_id, claim.token)
        return WorkflowState(
            record=copy_record(record),
            pointers=[copy_record(p) for p in s.pointers[record.id].values()],
            subscriptions=[
                copy_record(x)
                for x in sorted(s.subscriptions[record.id].values(), key=lambda x: (x.as_of, x.id))
            ],
        )

    async def commit(self, commit: StepCommit) -> WorkflowStatus:
        """Apply one step transition atomically, fenced by ``(owner, token)``.

        Every check runs before the first write, so a failed commit writes nothing.
        A ``status`` of RUNNABLE (or ``None``) keeps the stored status, so a suspension
        made while the step ran survives; a finished status sets ``complete_time``,
        clears ``next_execution`` and the lease. A RUNNABLE workflow left idle while an
        open subscription matches an undelivered event is made due now, so an event
        published while the step ran is never lost.

        Returns:
            The workflow's status after the write.

        Raises:
            LeaseLost: owner or token do not match, or the workflow is finished.
            ProviderError: an event delivered twice to this workflow, a duplicate
                pointer or subscription id, or an update of an unknown pointer.
            InvalidData: the data or a pointer is not JSON.
        """
        record = self.state.workflows.get(commit.workflow_id)
        if (
            record is None
            or (record.lease_owner, record.lease_token) != (commit.owner, commit.token)
            or record.status not in _COMMITTABLE
        ):
            raise LeaseLost(commit.workflow_id, commit.token)
        writes = self._check(commit)
        s = self.state
        s.pointers[record.id].update({p.id: p for p in writes.pointers})
        s.subscriptions[record.id] = writes.subscriptions
        s.deliveries.update(writes.deliveries)
        s.errors[record.id].extend(writes.errors)
        self._write_record(record, commit)
        self._keep_events_due(record)
        if record.status.finished:
            # Only this commit can have finished it: a finished workflow is not committable.
            children.publish_child_finished(self.state, record)
        return record.status

    async def set_status(
        self,
        workflow_id: str,
        action: str,
        allowed_from: frozenset[WorkflowStatus],
        to: WorkflowStatus,
    ) -> WorkflowRecord:
        """Move the workflow to ``to`` if its status is in ``allowed_from``.

        A move to RUNNABLE makes it due now; a move to a finished status sets
        ``complete_time`` and clears the lease, fencing off the current owner, and
        publishes the child-finished event if the workflow has a parent. A move to
        TERMINATED also terminates its RUNNABLE and SUSPENDED descendants.

        Raises:
            NotFound: unknown id.
            InvalidStateTransition: the current status is not in ``allowed_from``.
        """
        record = self._record(workflow_id)
        if record.status not in allowed_from:
            raise InvalidStateTransition(workflow_id, action, record.status.value)
        now = self.state.now_ms()
        record.status = to
        if to is WorkflowStatus.RUNNABLE:
            record.next_execution = now
            self.state.wake()
        if to.finished:
            record.complete_time = now
            record.next_execution = None
            _clear_lease(record)
            children.publish_child_finished(self.state, record)
        if to is WorkflowStatus.TERMINATED:
            children.terminate_descendants(self.state, record.id)
        return copy_record(record)

    async def purge(self, older_than_ms: int, statuses: frozenset[WorkflowStatus]) -> int:
        """Delete finished workflows (of ``statuses``) completed before the time, with
        their pointers, subscriptions, deliveries and errors; returns how many."""
        return events.purge(self.state, older_than_ms, statuses)

    async def publish_event(self, name: str, key: str, data_json: str) -> Event:
        """Store an event and make each RUNNABLE workflow subscribed to it due now.

        Raises:
            InvalidData: ``data_json`` is not JSON.
        """
        return events.publish_event(self.state, name, key, data_json)

    async def find_events(
        self, workflow_id: str, subscriptions: list[EventSubscription]
    ) -> dict[str, Event]:
        """For each subscription id, the earliest matching event not yet delivered to
        this workflow."""
        return events.find_events(self.state, workflow_id, subscriptions)

    async def save_definition(
        self, record: DefinitionRecord, source: DefinitionSourceRecord | None = None
    ) -> None:
        """Insert or replace a definition, and store its source unless its digest is
        stored already; ``registered_at`` 0 means now.

        Raises:
            ProviderError: the source's digest does not match its content or the
                record's ``source_digest``.
            SourceNotFound: ``record.source_digest`` names no stored source.
        """
        s = self.state
        digest = saved_source_digest(record, source)
        if source is None and digest is not None and digest not in s.sources:
            raise SourceNotFound(digest, record.definition_id, record.version)
        now = s.now_ms()
        if source is not None and source.digest not in s.sources:
            kept = copy_json(source)
            kept.created_at = now
            s.sources[source.digest] = kept
        stored = copy_record(record)
        stored.source_digest = digest
        if stored.registered_at == 0:
            stored.registered_at = now
        s.definitions[(record.definition_id, record.version)] = stored

    async def get_definition(self, definition_id: str, version: int | None) -> DefinitionRecord:
        """The definition of that version, or its latest version when ``None``.

        Raises:
            DefinitionNotFound: nothing recorded under that id (and version).
        """
        definitions = self.state.definitions
        if version is None:
            versions = [v for (d, v) in definitions if d == definition_id]
            if not versions:
                raise DefinitionNotFound(definition_id)
            version = max(versions)
        found = definitions.get((definition_id, version))
        if found is None:
            raise DefinitionNotFound(definition_id, version)
        return copy_record(found)

    async def get_source(self, digest: str) -> DefinitionSourceRecord:
        """The stored source with this digest.

        Raises:
            SourceNotFound: no source with that digest is stored.
        """
        found = self.state.sources.get(digest)
        if found is None:
            raise SourceNotFound(digest)
        return copy_record(found)

    async def pinned_definitions(self) -> list[tuple[str, int, str]]:
        """The distinct (definition, version, source digest) of unfinished workflows
        that run against a stored source, sorted."""
        return sorted(
            {
                (r.definition_id, r.version, r.source_digest)
                for r in self.state.workflows.values()
                if r.source_digest is not None and r.status in _UNFINISHED
            }
        )

    def _record(self, workflow_id: str) -> WorkflowRecord:
        record = self.state.workflows.get(workflow_id)
        if record is None:
            raise NotFound(workflow_id)
        return record

    def _check(self, commit: StepCommit) -> _Writes:
        """Validate and copy everything a commit writes besides the workflow row."""
        s, wid = self.state, commit.workflow_id
        if commit.data is not None:
            events.parse_json(commit.data, f"data of workflow {wid}")
        new_pointers = [copy_json(p) for p in commit.new_pointers]
        updated_pointers = [copy_json(p) for p in commit.updated_pointers]
        stored = s.pointers[wid]
        _check_unique([p.id for p in new_pointers], set(stored), f"pointer of workflow {wid}")
        known = set(stored) | {p.id for p in new_pointers}
        unknown = [p.id for p in updated_pointers if p.id not in known]
        if unknown:
            raise ProviderError(f"cannot update unknown pointers {unknown} of workflow {wid}")
        deliveries = [(wid, event_id) for event_id in commit.delivered_events]
        duplicate = [d[1] for d in deliveries if d in s.deliveries]
        if duplicate or len(set(deliveries)) != len(deliveries):
            raise ProviderError(
                f"event {duplicate or commit.delivered_events} already delivered to workflow {wid}"
            )
        return _Writes(
            pointers=[*new_pointers, *updated_pointers],
            subscriptions=self._next_subscriptions(commit),
            deliveries=deliveries,
            errors=[copy_record(e) for e in commit.errors],
        )

    def _next_subscriptions(self, commit: StepCommit) -> dict[str, EventSubscription]:
        wid = commit.workflow_id
        removed = set(commit.removed_subscriptions)
        kept = {k: v for k, v in self.state.subscriptions[wid].items() if k not in removed}
        added = [copy_record(x) for x in commit.new_subscriptions]
        strangers = [x.id for x in added if x.workflow_id != wid]
        if strangers:
            raise ProviderError(f"subscriptions {strangers} belong to another workflow than {wid}")
        _check_unique([x.id for x in added], set(kept), f"subscription of workflow {wid}")
        return kept | {x.id: x for x in added}

    def _write_record(self, record: WorkflowRecord, commit: StepCommit) -> None:
        now = self.state.now_ms()
        record.recoveries = 0  # progress: the crash-loop count starts over
        if commit.data is not None:
            record.data = commit.data
        # RUNNABLE (or no status) keeps the stored status, so that a suspension made
        # while the step ran survives its commit.
        if commit.status is not None and commit.status is not WorkflowStatus.RUNNABLE:
            record.status = commit.status
        if commit.error is not None:
            record.error = commit.error
        record.next_execution = commit.next_execution
        if record.status.finished:
            record.complete_time = now if commit.complete_time is None else commit.complete_time
            record.next_execution = None
            _clear_lease(record)
        elif commit.release:
            _clear_lease(record)
        if (
            record.lease_owner is None
            and record.status is WorkflowStatus.RUNNABLE
            and record.next_execution is not None
            and record.next_execution <= now
        ):
            self.state.wake()

    def _keep_events_due(self, record: WorkflowRecord) -> None:
        # An event published after the executor's find_events, or before the commit
        # that adds its subscription, found nothing to wake; a commit that leaves the
        # workflow idle would bury it. Checked in the same atomic step as the write.
        now = self.state.now_ms()
        idle = record.next_execution is None or record.next_execution > now
        if (
            record.status is WorkflowStatus.RUNNABLE
            and idle
            and events.has_deliverable_event(self.state, record.id)
        ):
            record.next_execution = 0
            self.state.wake()


def _clear_lease(record: WorkflowRecord) -> None:
    # The token stays: it only ever grows, so a later claim still fences this one.
    record.lease_owner = None
    record.lease_expires_at = None


def _check_unique(ids: list[str], existing: set[str], what: str) -> None:
    seen = set(existing)
    for item in ids:
        if item in seen:
            raise ProviderError(f"duplicate id {item!r} for a {what}")
        seen.add(item)
