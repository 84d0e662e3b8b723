"""Records that cross the provider seam: instances, execution pointers, events,
subscriptions, execution errors, claims.

Times inside the engine are integer milliseconds since the Unix epoch, taken from the
database clock (see :mod:`wfe_core.clock`); public instances expose ``datetime``.
Workflow data crosses the seam as JSON text so providers never import user models.
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from wfe_core.errors import ProviderError


class WorkflowStatus(enum.StrEnum):
    """Lifecycle status of a workflow instance."""

    RUNNABLE = "RUNNABLE"
    SUSPENDED = "SUSPENDED"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset(
    {WorkflowStatus.COMPLETE, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED}
)

CHILD_FINISHED_EVENT = "wfe.child_finished"
"""The event a store publishes when a workflow that has a parent finishes.

Its key is the child's workflow id; its data is a :class:`ChildFinished` as JSON. The
store writes it in the same transaction that makes the child COMPLETE, FAILED or
TERMINATED, so a parent waiting on it (a sub-workflow step) can never miss it. A
workflow without a parent publishes nothing; descendants terminated along with their
ancestor (the terminate cascade) publish nothing either, as their parent is going too.
"""


class PointerStatus(enum.StrEnum):
    """Status of one step activation (an execution pointer)."""

    PENDING = "PENDING"  # ready to run (or due at sleep_until)
    RUNNING = "RUNNING"  # body started in a pass that has not committed
    SLEEPING = "SLEEPING"  # come back at sleep_until (sleep, retry back-off, delay)
    WAITING = "WAITING"  # waiting for an event (and maybe a timeout at sleep_until)
    WAITING_CHILDREN = "WAITING_CHILDREN"  # a container whose branch is running
    COMPLETE = "COMPLETE"
    SKIPPED = "SKIPPED"  # run_if was false
    FAILED = "FAILED"  # failed for good
    CANCELLED = "CANCELLED"  # stopped unfinished: its saga is rolling back
    COMPENSATED = "COMPENSATED"  # completed, then undone by its saga's compensation

    @property
    def ended(self) -> bool:
        return self in ENDED_POINTER_STATUSES


ENDED_POINTER_STATUSES = frozenset(
    {
        PointerStatus.COMPLETE,
        PointerStatus.SKIPPED,
        PointerStatus.FAILED,
        PointerStatus.CANCELLED,
        PointerStatus.COMPENSATED,
    }
)


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no timezone; use an aware datetime")
    return int(value.timestamp() * 1000)


_ATOMS = (str, int, float, bool, type(None))  # immutable (enums here are str subclasses)


class ExecutionPointer(BaseModel):
    """One activation of one step: the unit the executor runs and commits."""

    model_config = ConfigDict(validate_assignment=False)

    id: str
    step_id: int
    step_name: str
    status: PointerStatus = PointerStatus.PENDING
    attempt: int = 1  # 1 on the first try; crash recoveries do not count
    sleep_until: int | None = None
    persistence_data: Any = None
    start_time: int | None = None
    end_time: int | None = None
    event_name: str | None = None
    event_key: str | None = None
    event_as_of: int | None = None
    event_data: Any = None
    event_published: bool = False
    children: list[str] = Field(default_factory=list)
    context_item: Any = None
    predecessor_id: str | None = None
    scope: list[str] = Field(default_factory=list)  # enclosing container pointers, innermost first
    outcome: Any = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.status.ended

    def detached(self) -> ExecutionPointer:
        """A copy sharing no mutable value with this pointer: ``model_copy(deep=True)``
        at an eighth of its cost (it runs once per step), since most fields are atoms
        that need no copy."""
        clone = self.model_copy()
        fields = clone.__dict__
        for name, value in fields.items():
            if not isinstance(value, _ATOMS):
                fields[name] = copy.deepcopy(value)
        return clone


class WorkflowRecord(BaseModel):
    """A stored workflow instance with its data as JSON text (untyped)."""

    id: str
    definition_id: str
    version: int
    reference: str | None = None
    idempotency_key: str | None = None
    status: WorkflowStatus
    data: str  # JSON text
    error: str | None = None
    create_time: int
    complete_time: int | None = None
    next_execution: int | None = None
    lease_owner: str | None = None
    lease_token: int = 0
    lease_expires_at: int | None = None
    recoveries: int = 0
    parent_id: str | None = None  # the workflow whose sub-workflow step started this one
    source_digest: str | None = None  # the stored source it runs against (None: code)


class ChildFinished(BaseModel):
    """The data of a :data:`CHILD_FINISHED_EVENT`: how a child workflow ended."""

    workflow_id: str
    definition_id: str
    version: int
    status: WorkflowStatus
    data: Any = None  # the child's final data, parsed (a JSON object for engine workflows)
    error: str | None = None

    @classmethod
    def of(cls, record: WorkflowRecord) -> ChildFinished:
        """The event data of a finished child, from its record as just written."""
        return cls(
            workflow_id=record.id,
            definition_id=record.definition_id,
            version=record.version,
            status=record.status,
            data=json.loads(record.data),
            error=record.error,
        )


class WorkflowState(BaseModel):
    """What an executor loads after claiming: the record and its pointers."""

    record: WorkflowRecord
    pointers: list[ExecutionPointer]
    subscriptions: list[EventSubscription] = Field(default_factory=list)


class StartLease(BaseModel):
    """Create a workflow already leased to ``owner`` for ``seconds``: the host that
    starts it runs it at once, with no claim and no read (token 1, no recovery).
    Should the host die first, the lease expires and any host recovers it."""

    owner: str
    seconds: float = Field(gt=0)


class NewWorkflow(BaseModel):
    """A workflow to create, with its first pointers."""

    id: str
    definition_id: str
    version: int
    data: str
    reference: str | None = None
    idempotency_key: str | None = None
    pointers: list[ExecutionPointer] = Field(default_factory=list)
    next_execution: int | None = 0  # 0 means "now" (the store uses its own clock)
    parent_id: str | None = None  # set by sub-workflow steps; see CHILD_FINISHED_EVENT
    # The stored source (DefinitionSourceRecord) this workflow resumes against, for a
    # definition built from a text source; the store refuses a digest it does not hold.
    source_digest: str | None = None
    # Only honoured when the workflow is created: a start that finds its idempotency
    # key taken returns the existing workflow as it is.
    lease: StartLease | None = None

    @property
    def awaits_claim(self) -> bool:
        """Whether a host must claim it (so idle hosts are woken): it is due, and no
        host leased it at its start."""
        return self.next_execution is not None and self.lease is None


class Event(BaseModel):
    """An event published to workflows waiting on (name, key)."""

    id: str
    name: str
    key: str
    data: Any = None
    event_time: int


class EventSubscription(BaseModel):
    """A pointer waiting for an event; events at or after ``as_of`` match."""

    id: str
    workflow_id: str
    pointer_id: str
    event_name: str
    event_key: str
    as_of: int


class ExecutionError(BaseModel):
    """An append-only record of a failed step attempt."""

    workflow_id: str
    pointer_id: str
    step_name: str
    attempt: int
    error_time: int
    message: str


class DefinitionRecord(BaseModel):
    """A definition as hosts record it in the store, so clients can find it.

    ``source_digest`` names the stored source of a definition built from text (see
    :class:`DefinitionSourceRecord`); ``None`` for a definition built in code.
    """

    definition_id: str
    version: int
    fingerprint: str
    data_schema: dict[str, Any] = Field(default_factory=dict)
    registered_at: int = 0
    source_digest: str | None = None


def canonical_config(config: Mapping[str, Any]) -> str:
    """Load-time values as canonical JSON (sorted keys, no spaces): part of a digest."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))


def source_digest(kind: str, text: str, config: Mapping[str, Any]) -> str:
    """sha256 of a definition source's kind, text and config: its identity in the store."""
    payload = json.dumps([kind, text, canonical_config(config)]).encode()
    return hashlib.sha256(payload).hexdigest()


class DefinitionSourceRecord(BaseModel):
    """The text a definition was built from, stored once per digest.

    Every workflow started from that definition names it (``source_digest``) and
    resumes against this copy, whatever happens to the file it came from. Stored
    sources are immutable and never deleted, so a digest a store accepted stays valid.
    """

    digest: str
    kind: str  # names the loader that rebuilds the definition
    text: str
    config: dict[str, Any] = Field(default_factory=dict)  # load-time values
    created_at: int = 0  # store time of the first save (0 on the way in: "now")

    @property
    def content_digest(self) -> str:
        """The digest the content hashes to; equals ``digest`` for a sound record."""
        return source_digest(self.kind, self.text, self.config)


def saved_source_digest(
    record: DefinitionRecord, source: DefinitionSourceRecord | None
) -> str | None:
    """The ``source_digest`` a store saves a definition with (the checks every store
    makes before :meth:`~wfe_core.ports.DefinitionStore.save_definition` writes).

    Raises:
        ProviderError: the source's digest is not its content's, or the record names
            another digest than the source it comes with.
    """
    if source is None:
        return record.source_digest
    what = f"source of workflow definition {record.definition_id!r} v{record.version}"
    if source.digest != source.content_digest:
        raise ProviderError(
            f"{what}: digest {source.digest[:12]} is not the digest of its content "
            f"({source.content_digest[:12]})"
        )
    if record.source_digest not in (None, source.digest):
        raise ProviderError(
            f"{what}: the definition names source {record.source_digest[:12]} "
            f"but comes with source {source.digest[:12]}"
        )
    return source.digest


class WorkflowQuery(BaseModel):
    """Filters for listing workflows."""

    status: WorkflowStatus | None = None
    definition_id: str | None = None
    reference: str | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class Claim:
    """A workflow this host leased: ``token`` fences every write it makes."""

    workflow_id: str
    owner: str
    token: int
    expires_at: int  # database time, ms
    db_now: int  # database time when the claim was made, ms
    recoveries: int = 0

    @classmethod
    def of_created(cls, record: WorkflowRecord) -> Claim | None:
        """The claim a workflow created with a :class:`StartLease` stands for, or
        ``None`` when it was created unleased."""
        if record.lease_owner is None or record.lease_expires_at is None:
            return None
        return cls(
            workflow_id=record.id,
            owner=record.lease_owner,
            token=record.lease_token,
            expires_at=record.lease_expires_at,
            db_now=record.create_time,
        )


@dataclass(frozen=True)
class Lease:
    """A named lock held with a fencing token that grows on every acquisition."""

    name: str
    owner: str
    token: int
    expires_at: int


@dataclass
class StepCommit:
    """Everything one step transition writes, in one transaction, fenced by the token.

    ``data`` is the workflow's complete new data (JSON text) or ``None`` if unchanged.
    ``next_execution``: ``None`` means nothing to do until an event arrives; an int is
    the due time (ms, database clock). ``release`` clears the lease after writing.
    """

    workflow_id: str
    owner: str
    token: int
    data: str | None = None
    status: WorkflowStatus | None = None
    error: str | None = None
    next_execution: int | None = None
    release: bool = False
    new_pointers: list[ExecutionPointer] = field(default_factory=list)
    updated_pointers: list[ExecutionPointer] = field(default_factory=list)
    new_subscriptions: list[EventSubscription] = field(default_factory=list)
    removed_subscriptions: list[str] = field(default_factory=list)
    delivered_events: list[str] = field(default_factory=list)
    errors: list[ExecutionError] = field(default_factory=list)
    complete_time: int | None = None
    """For a finishing commit: the completion time to store (ms, database clock; the
    executor's synced estimate, as for step end times), so that the executor knows the
    finished record without reading it back. The store's time when None."""
    has_parent: bool = True
    """Whether the workflow was started by another (a store may skip what only matters
    to a child's parent when this is False); true unless known otherwise."""
    has_subscriptions: bool = True
    """Whether the workflow has event subscriptions after this commit (a store may skip
    looking for undelivered events when this is False); true unless known otherwise."""


WorkflowState.model_rebuild()
