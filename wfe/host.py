"""WorkflowHost: the embeddable engine. Register definitions, start it, start workflows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from wfe import backends
from wfe.client import WorkflowClient
from wfe.instance import WorkflowInstance
from wfe.registry import Registry
from wfe.worker import Worker, WorkerOptions
from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import ShuttingDown
from wfe_core.executor.run import RunServices
from wfe_core.lifecycle import LifecycleHub, LoggingSubscriber, Subscriber
from wfe_core.models import DefinitionRecord
from wfe_core.ports import Backend, LockProvider
from wfe_core.retry import DEFAULT_RETRY, RetryPolicy

log = logging.getLogger("wfe.host")


class WorkflowHost(WorkflowClient):
    """Runs workflows durably on a store shared with any number of other hosts.

    Create it with :meth:`from_url` or :class:`~wfe.WorkflowHostBuilder`; use it as
    ``async with`` (or ``start()``/``stop()``). Every client operation is available too.

    Args:
        lease: seconds a claimed workflow stays ours without renewal; a dead host's
            work is taken over after it.
        poll_interval: seconds between polls when idle (wake-ups make it faster).
        max_concurrent_workflows: workflows this host runs at once.
        auto_migrate: apply schema migrations at start.
        max_recovery_attempts: a workflow whose hosts died more than this many times in
            a row while running it (a step that crashes its process) is FAILED with the
            reason instead of crashing hosts forever; ``None`` disables the check.
        cleanup_ttl: when set, finished workflows older than this are purged
            periodically (one host at a time, under a lock).
        log_events: log every lifecycle event through ``logging`` (logger ``wfe.events``).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        max_concurrent_workflows: int = 100,
        auto_migrate: bool = True,
        default_retry: RetryPolicy = DEFAULT_RETRY,
        max_recovery_attempts: int | None = 5,
        cleanup_ttl: timedelta | None = None,
        cleanup_interval: float = 300.0,
        log_events: bool = True,
        owns_backend: bool = False,
        lifecycle: LifecycleHub | None = None,
    ) -> None:
        if lease <= 0 or poll_interval <= 0 or max_concurrent_workflows < 1:
            raise ValueError(
                "lease and poll_interval must be positive, max_concurrent_workflows >= 1"
            )
        self._hub = lifecycle or LifecycleHub()
        self._registry = Registry()
        super().__init__(
            backend,
            owns_backend=owns_backend,
            auto_migrate=auto_migrate,
            data_types=self._data_type,
            lifecycle=self._hub,
        )
        if log_events:
            self._hub.subscribe(LoggingSubscriber())
        services = RunServices(
            persistence=backend.persistence,
            lifecycle=self._hub,
            start_child=self._start_child,
            default_retry=default_retry,
            on_finished=self._finished,
            max_recovery_attempts=max_recovery_attempts,
        )
        self._worker = Worker(
            backend,
            WorkerOptions(lease, poll_interval, max_concurrent_workflows),
            self._registry.get,
            services,
            self._registry.keys,
        )
        self._cleanup_ttl = cleanup_ttl
        self._cleanup_interval = cleanup_interval
        self._cleanup_task: asyncio.Task[None] | None = None
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._state = "new"
        self._pending_saves: list[asyncio.Task[None]] = []

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        max_concurrent_workflows: int = 100,
        auto_migrate: bool = True,
        **options: Any,
    ) -> WorkflowHost:
        """A host over the database at ``url``: ``sqlite:///wfe.db`` (default store,
        ``sqlite+aiosqlite://`` works too) or ``postgresql://…`` (``wfe[postgres]``)."""
        return cls(
            backends.open_backend(url),
            lease=lease,
            poll_interval=poll_interval,
            max_concurrent_workflows=max_concurrent_workflows,
            auto_migrate=auto_migrate,
            owns_backend=True,
            **options,
        )

    @property
    def host_id(self) -> str:
        """This host's lease owner name."""
        return self._worker.owner

    # -- lifecycle ---------------------------------------------------------------------

    def register(self, definition: WorkflowDefinition) -> None:
        """Register a definition; this host then claims its workflows.

        Works before or after ``start()``. Before, the definition is recorded in the
        store when the host starts; after, it is recorded in the background, so a
        client in another process may see ``DefinitionNotFound`` for a moment. The
        same id/version with different steps is a ``DefinitionError``.
        """
        if self._registry.add(definition) and self._state == "running":
            self._pending_saves.append(asyncio.create_task(self._save_definition(definition)))
            self.backend.queue.wake()

    async def start(self) -> None:
        """Migrate (if enabled), record the registered definitions, start claiming."""
        if self._state != "new":
            raise RuntimeError(f"host is {self._state}; a host starts once")
        await self.ready()
        for definition in self._registry.all():
            await self._save_definition(definition)
        self._hub.start()
        self._worker.start()
        if self._cleanup_ttl is not None:
            self._cleanup_task = asyncio.create_task(self._cleanup(self._cleanup_ttl))
        self._state = "running"

    async def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown: stop claiming, let running steps finish within ``timeout``
        seconds, then cancel them and release their leases so another host takes over
        at once."""
        if self._state in ("stopping", "stopped"):
            return
        self._state = "stopping"
        await self._worker.stop(timeout)
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup_task
        for task in self._pending_saves:
            with contextlib.suppress(Exception):
                await task
        await self._hub.stop()
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        await self.close()
        self._state = "stopped"

    async def __aenter__(self) -> WorkflowHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def subscribe(self, callback: Subscriber) -> Any:
        """Call ``callback(event)`` (sync or async) for every lifecycle event; returns
        a function that unsubscribes. A failing subscriber is logged, never fatal."""
        return self._hub.subscribe(callback)

    # -- operations --------------------------------------------------------------------

    async def start_workflow(  # type: ignore[override]
        self,
        definition_id: str,
        data: Any = None,
        *,
        version: int | None = None,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start a workflow (see :meth:`WorkflowClient.start_workflow`).

        Raises:
            ShuttingDown: the host is stopping.
        """
        if self._state in ("stopping", "stopped"):
            raise ShuttingDown(f"host is {self._state}; start_workflow is refused")
        return await super().start_workflow(
            definition_id,
            data,
            version=version,
            reference=reference,
            idempotency_key=idempotency_key,
        )

    async def wait_for_completion(  # type: ignore[override]
        self, workflow_id: str, timeout: float | timedelta = 30.0
    ) -> WorkflowInstance:
        """Wait until the workflow is COMPLETE, FAILED or TERMINATED; ``TimeoutError``
        otherwise. Wakes at once when this host finishes it; polls for other hosts."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        deadline = asyncio.get_running_loop().time() + seconds
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(workflow_id, [])
        waiters.append(future)  # registered before the first read: no missed completion
        try:
            while True:
                instance = await self.get_workflow(workflow_id)
                if instance.status.finished:
                    return instance
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    raise TimeoutError(
                        f"workflow {workflow_id} is still "
                        f"{instance.status.value} after {seconds:g}s"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(future), min(remaining, 0.25))
        finally:
            if future in self._waiters.get(workflow_id, []):
                self._waiters[workflow_id].remove(future)
            if not self._waiters.get(workflow_id):
                self._waiters.pop(workflow_id, None)

    # -- internals ---------------------------------------------------------------------

    async def _resolve_version(self, definition_id: str, version: int | None) -> int:
        local = self._registry.get(definition_id, version)
        if local is not None:
            return local.version
        return await super()._resolve_version(definition_id, version)

    def _data_type(self, definition_id: str, version: int) -> type[BaseModel] | None:
        definition = self._registry.get(definition_id, version)
        return None if definition is None else definition.data_type

    async def _save_definition(self, definition: WorkflowDefinition) -> None:
        await self.backend.persistence.save_definition(
            DefinitionRecord(
                definition_id=definition.id,
                version=definition.version,
                fingerprint=definition.fingerprint,
                data_schema=definition.data_type.model_json_schema(),
            )
        )

    async def _start_child(
        self, definition_id: str, data: Any, key: str, reference: str | None
    ) -> str:
        return await WorkflowClient.start_workflow(
            self, definition_id, data, reference=reference, idempotency_key=key
        )

    def _finished(self, workflow_id: str) -> None:
        for future in self._waiters.pop(workflow_id, []):
            if not future.done():
                future.set_result(None)

    async def _cleanup(self, ttl: timedelta) -> None:
        lock: LockProvider = self.backend.lock
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                lease = await lock.acquire("wfe:cleanup", self.host_id, self._cleanup_interval)
                if lease is None:
                    continue
                try:
                    deleted = await self.purge(ttl)
                    log.info("cleanup purged %d finished workflows older than %s", deleted, ttl)
                finally:
                    await lock.release(lease)
            except Exception:
                log.exception("periodic cleanup failed")


__all__ = ["WorkflowHost"]
