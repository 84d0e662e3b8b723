"""WorkflowClient: start, query, steer and wait for workflows without executing any.

A web process enqueues with a client; worker hosts execute. ``WorkflowHost`` offers
the same operations by delegating to a client over its own backend.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from wfe import backends
from wfe.completion import CompletionWatcher
from wfe.instance import StepInstance, WorkflowInstance
from wfe_core import events as ev
from wfe_core.errors import DefinitionNotFound, InvalidData, NotFound
from wfe_core.executor.data import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    encode,
    encode_value,
    to_jsonable,
    validate,
)
from wfe_core.models import (
    FINISHED_STATUSES,
    NewWorkflow,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowStatus,
)
from wfe_core.ports import Backend, LifecyclePublisher

DataTypeLookup = Callable[[str, int], "type[BaseModel] | None"]

_SUSPENDABLE = frozenset({WorkflowStatus.RUNNABLE})
_RESUMABLE = frozenset({WorkflowStatus.SUSPENDED})
_TERMINABLE = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})


class _NoEvents:
    def publish(self, event: ev.LifecycleEvent) -> None:
        """A client has no subscribers of its own."""


class WorkflowClient:
    """Talks to the store only: never claims or runs a step.

    Create with :meth:`from_url`; use directly or as ``async with``; ``close()`` frees
    the connections.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        owns_backend: bool = False,
        auto_migrate: bool = True,
        data_types: DataTypeLookup | None = None,
        lifecycle: LifecyclePublisher | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.backend = backend
        self._owns_backend = owns_backend
        self._auto_migrate = auto_migrate
        self._migrated = False
        self._migrate_lock = asyncio.Lock()
        self._data_types = data_types
        self._lifecycle: LifecyclePublisher = lifecycle or _NoEvents()
        self._max_payload = max_payload_bytes
        self._completions = CompletionWatcher(backend.persistence)

    @classmethod
    def from_url(cls, url: str, *, auto_migrate: bool = True) -> WorkflowClient:
        """A client over the database at ``url`` (``sqlite:///file``, ``postgresql://…``)."""
        return cls(backends.open_backend(url), owns_backend=True, auto_migrate=auto_migrate)

    async def __aenter__(self) -> WorkflowClient:
        await self.ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ready(self) -> None:
        """Apply migrations once (when ``auto_migrate``)."""
        if self._migrated or not self._auto_migrate:
            return
        async with self._migrate_lock:
            if not self._migrated:
                await self.backend.persistence.migrate()
                self._migrated = True

    async def close(self) -> None:
        if self._owns_backend:
            await self._completions.close()
            await self.backend.close()

    # -- starting ----------------------------------------------------------------------

    async def start_workflow(
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
        data_type: type[BaseModel] | None = None,
        parent_id: str | None = None,
    ) -> str:
        """Start a workflow; returns its id.

        With the same ``idempotency_key`` every call returns the same instance and only
        the first creates it. A definition built from a text source (a YAML file) was
        recorded with that source: the workflow runs against the stored copy, whatever
        happens to the file later.

        Args:
            parent_id: the workflow that started this one; set by sub-workflow steps.
                When this one finishes, the store publishes its
                ``CHILD_FINISHED_EVENT`` (key: this workflow's id), and terminating
                the parent terminates it too. The parent must be RUNNABLE or SUSPENDED
                (a repeated start with the same ``idempotency_key`` still returns its
                child after the parent finished).

        Raises:
            DefinitionNotFound: no host ever registered this id (and version).
            InvalidData: data fails the model's validation or cannot be stored.
            NotFound: ``parent_id`` names no workflow.
            InvalidStateTransition: the parent is finished (COMPLETE, FAILED,
                TERMINATED): a child started now would run unsupervised.
        """
        await self.ready()
        version, source_digest = await self._resolve_start(definition_id, version)
        model = data_type or self._type_of(definition_id, version)
        text = self._encode_data(model, data)
        new = NewWorkflow(
            id=str(uuid.uuid4()),
            definition_id=definition_id,
            version=version,
            data=text,
            reference=reference,
            idempotency_key=idempotency_key,
            parent_id=parent_id,
            source_digest=source_digest,
        )
        record, created = await self._create(new)
        if created:
            self._lifecycle.publish(
                ev.WorkflowStarted(
                    workflow_id=record.id,
                    definition_id=record.definition_id,
                    version=record.version,
                    reference=reference,
                )
            )
        return record.id

    async def _create(self, new: NewWorkflow) -> tuple[WorkflowRecord, bool]:
        """Store the new workflow and hand it to the hosts that may claim it."""
        record, created = await self.backend.persistence.create_workflow(new)
        if created:
            await self.backend.queue.enqueue(record)
            self.backend.queue.wake()
        return record, created

    async def _resolve_start(
        self, definition_id: str, version: int | None
    ) -> tuple[int, str | None]:
        """The version to start (as given, or the latest any host recorded) and the
        digest of the stored source the workflow will run against (``None`` for a
        definition built in code): the one its definition was last recorded with."""
        record = await self.backend.persistence.get_definition(definition_id, version)
        return record.version, record.source_digest

    def _encode_data(self, model: type[BaseModel] | None, data: Any) -> str:
        if model is not None:
            return encode(
                to_jsonable(validate(model, {} if data is None else data)), self._max_payload
            )
        if isinstance(data, BaseModel):
            return encode(to_jsonable(data), self._max_payload)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidData(
                f"workflow data must be a model or a JSON object, got {type(data).__name__}"
            )
        return encode(encode_value(data, "workflow data"), self._max_payload)

    def _type_of(self, definition_id: str, version: int) -> type[BaseModel] | None:
        return None if self._data_types is None else self._data_types(definition_id, version)

    # -- querying ----------------------------------------------------------------------

    async def get_workflow(
        self, workflow_id: str, *, data_type: type[BaseModel] | None = None
    ) -> WorkflowInstance:
        """The instance; raises ``NotFound`` for an unknown or malformed id."""
        await self.ready()
        record = await self.backend.persistence.get_workflow(_checked_id(workflow_id))
        return self._instance(record, data_type)

    async def get_steps(self, workflow_id: str) -> list[StepInstance]:
        """The workflow's step activations, oldest first (``NotFound`` if unknown)."""
        await self.ready()
        pointers = await self.backend.persistence.get_pointers(_checked_id(workflow_id))
        return [StepInstance.from_pointer(p) for p in pointers]

    async def list_workflows(
        self,
        *,
        status: WorkflowStatus | None = None,
        definition_id: str | None = None,
        reference: str | None = None,
        limit: int = 100,
        offset: int = 0,
        data_type: type[BaseModel] | None = None,
    ) -> list[WorkflowInstance]:
        """Instances matching the filters, newest first."""
        await self.ready()
        query = WorkflowQuery(
            status=status,
            definition_id=definition_id,
            reference=reference,
            limit=limit,
            offset=offset,
        )
        records = await self.backend.persistence.list_workflows(query)
        return [self._instance(r, data_type) for r in records]

    def _instance(
        self, record: WorkflowRecord, data_type: type[BaseModel] | None
    ) -> WorkflowInstance:
        model = data_type or self._type_of(record.definition_id, record.version)
        return WorkflowInstance.from_record(record, model)

    async def wait_for_completion(
        self,
        workflow_id: str,
        timeout: float | timedelta = 30.0,
        *,
        data_type: type[BaseModel] | None = None,
    ) -> WorkflowInstance:
        """Wait until the workflow is COMPLETE, FAILED or TERMINATED and return it.

        Raises:
            TimeoutError: it is still unfinished after ``timeout`` seconds.
            NotFound: no such workflow.
        """
        await self.ready()
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        try:
            record = await self._completions.wait(_checked_id(workflow_id), seconds)
        except TimeoutError:
            instance = await self.get_workflow(workflow_id, data_type=data_type)
            if instance.status in FINISHED_STATUSES:
                return instance  # it finished as the time ran out
            raise TimeoutError(
                f"workflow {workflow_id} is still {instance.status.value} after {seconds:g}s"
            ) from None
        return self._instance(record, data_type)

    # -- steering ----------------------------------------------------------------------

    async def publish_event(self, name: str, key: str, data: Any = None) -> str:
        """Publish an event to workflows waiting on (name, key); returns the event id.

        Every workflow waiting on it sees it, including ones that reach their wait
        later (events count from when a workflow started). Publishing with no waiter
        is not an error: the event is kept for workflows that wait later.
        """
        await self.ready()
        text = json.dumps(encode_value(data, f"data of event {name!r}/{key!r}"))
        event = await self.backend.persistence.publish_event(name, key, text)
        self.backend.queue.wake()
        return event.id

    async def suspend_workflow(self, workflow_id: str) -> None:
        """Stop scheduling the workflow's steps (running ones finish and commit)."""
        await self._control(
            workflow_id, "suspend", _SUSPENDABLE, WorkflowStatus.SUSPENDED, ev.WorkflowSuspended
        )

    async def resume_workflow(self, workflow_id: str) -> None:
        """Make a suspended workflow runnable again."""
        await self._control(
            workflow_id, "resume", _RESUMABLE, WorkflowStatus.RUNNABLE, ev.WorkflowResumed
        )
        self.backend.queue.wake()

    async def terminate_workflow(self, workflow_id: str) -> None:
        """Cancel the workflow for good: TERMINATED, and its owner is fenced off; so are
        its unfinished sub-workflows, and theirs."""
        await self._control(
            workflow_id, "terminate", _TERMINABLE, WorkflowStatus.TERMINATED, ev.WorkflowTerminated
        )

    async def _control(
        self,
        workflow_id: str,
        action: str,
        allowed: frozenset[WorkflowStatus],
        to: WorkflowStatus,
        event: type[ev.LifecycleEvent],
    ) -> None:
        await self.ready()
        record = await self.backend.persistence.set_status(
            _checked_id(workflow_id), action, allowed, to
        )
        self._lifecycle.publish(
            event(workflow_id=record.id, definition_id=record.definition_id, version=record.version)
        )

    async def purge(self, older_than: timedelta) -> int:
        """Delete finished workflows that completed more than ``older_than`` ago."""
        await self.ready()
        cutoff = self.backend.persistence.now_ms() - int(older_than.total_seconds() * 1000)
        return await self.backend.persistence.purge(cutoff, FINISHED_STATUSES)


def _checked_id(workflow_id: Any) -> str:
    if not isinstance(workflow_id, str) or not workflow_id or len(workflow_id) > 200:
        raise NotFound(str(workflow_id), "workflow ids are non-empty strings")
    return workflow_id


__all__ = ["DefinitionNotFound", "WorkflowClient"]
