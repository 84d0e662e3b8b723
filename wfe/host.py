"""WorkflowHost: the embeddable engine. Register definitions, start it, start workflows."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel

from wfe import backends
from wfe.children import HostChildren
from wfe.client import WorkflowClient
from wfe.instance import WorkflowInstance
from wfe.registry import Registry
from wfe.signals import SignalHandlers
from wfe.stored import StoredDefinitions
from wfe.worker import Worker, WorkerOptions
from wfe_core.definition import WorkflowDefinition
from wfe_core.errors import ShuttingDown
from wfe_core.executor.run import RunServices
from wfe_core.lifecycle import LifecycleHub, LoggingSubscriber, Subscriber
from wfe_core.models import DefinitionRecord, NewWorkflow, WorkflowRecord
from wfe_core.ports import Backend, LockProvider
from wfe_core.retry import DEFAULT_RETRY, RetryPolicy

log = logging.getLogger("wfe.host")

"""A signal disposition as ``signal.getsignal`` reports it."""

HostState = Literal["new", "running", "stopping", "stopped"]
"""What :attr:`WorkflowHost.state` returns: ``new`` (not started), ``running`` (claims
and runs workflows), ``stopping`` (a stop has begun: it claims nothing and starts no new
step; in-flight steps finish or are cancelled), ``stopped`` (nothing runs, every lease it
held is released and, if the host opened its store, the connections are closed)."""


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
        serve_stored_definitions: also claim the workflows of definitions this host
            never registered, whose stored source (a definition built from a YAML file,
            say) it can rebuild with a loader of :mod:`wfe.sources`. Off by default: a
            service runs only the definitions it registered. (Workflows of registered
            definitions always run against the source they started from, rebuilt
            when the registered one was built from another text.)

    Shutting down: :meth:`stop` (or leaving ``async with``) stops claiming, starts no new
    step, gives the in-flight steps ``timeout`` seconds to finish and commit, then
    cancels the rest and releases their workflows' leases, so other hosts continue them
    at once rather than after the lease expires. :meth:`request_stop` begins the same
    stop without waiting (from a signal handler, say), :meth:`wait_for_shutdown` waits
    for it, :meth:`cancel_running` cuts it short, :meth:`install_signal_handlers` wires
    it to SIGTERM/SIGINT and :attr:`state` tells where it is.
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
        serve_stored_definitions: bool = False,
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
            children=HostChildren(self, self._registry),
            default_retry=default_retry,
            on_finished=self._finished,
            max_recovery_attempts=max_recovery_attempts,
        )
        self._stored = StoredDefinitions(
            self._registry, backend.persistence, serve=serve_stored_definitions
        )
        self._saved_sources: set[str] = set()  # digests this host has stored
        self._worker = Worker(
            backend,
            WorkerOptions(lease, poll_interval, max_concurrent_workflows),
            self._stored.resolve,
            services,
            self._stored.eligible,
            self._stored.refresh,
        )
        self._cleanup_ttl = cleanup_ttl
        self._cleanup_interval = cleanup_interval
        self._cleanup_task: asyncio.Task[None] | None = None
        self._state: HostState = "new"
        self._pending_saves: list[asyncio.Task[None]] = []
        self._not_starting = asyncio.Event()  # clear while start() runs
        self._not_starting.set()
        self._stop_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._store_closed = False
        self._signals: SignalHandlers | None = None
        self._signals_received = 0

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

    @property
    def state(self) -> HostState:
        """``"new"``, ``"running"``, ``"stopping"`` or ``"stopped"`` (see :data:`HostState`)."""
        return self._state

    # -- lifecycle ---------------------------------------------------------------------

    def register(self, definition: WorkflowDefinition) -> None:
        """Register a definition; this host then claims its workflows.

        Works before or after ``start()``. Before, the definition is recorded in the
        store when the host starts; after, it is recorded in the background, so a
        client in another process may see ``DefinitionNotFound`` for a moment. The
        same id/version with different steps is a ``DefinitionError``.

        Raises:
            ShuttingDown: the host is stopping or stopped (it would never claim them).
        """
        if self._state in ("stopping", "stopped"):
            raise ShuttingDown(
                f"host {self.host_id} is {self._state}; register({definition.id!r}) is "
                "refused: a stopping host claims no new work"
            )
        if self._registry.add(definition) and self._state == "running":
            self._pending_saves.append(asyncio.create_task(self._save_definition(definition)))
            self.backend.queue.wake()

    async def start(self) -> None:
        """Migrate (if enabled), record the registered definitions, start claiming.

        Raises:
            RuntimeError: the host was started (or stopped) before: a host starts once.
            ShuttingDown: a stop was requested while it was starting.
        """
        if self._state != "new" or not self._not_starting.is_set():
            raise RuntimeError(f"host is {self._state}; a host starts once")
        self._not_starting.clear()
        try:
            await self.ready()
            for definition in self._registry.all():
                await self._save_definition(definition)
            await self._stored.refresh(force=True)
        finally:
            self._not_starting.set()
        if self._stop_task is not None:
            raise ShuttingDown(f"host {self.host_id} was asked to stop while it was starting")
        self._hub.start()
        self._worker.start()
        if self._cleanup_ttl is not None:
            self._cleanup_task = asyncio.create_task(self._cleanup(self._cleanup_ttl))
        self._state = "running"

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop gracefully and wait until stopped: :meth:`request_stop` then
        :meth:`wait_for_shutdown`.

        Args:
            timeout: seconds in-flight steps get to finish and commit before they are
                cancelled and their leases released; ``0`` cancels them at once. A stop
                already under way keeps its deadline unless this one is sooner.
                Cancelling the caller does not cancel the stop.
        """
        self.request_stop(timeout)
        await self.wait_for_shutdown()

    def request_stop(self, timeout: float = 30.0) -> None:
        """Begin a graceful stop in the background and return at once.

        The host stops claiming and starts no new step; in-flight steps get ``timeout``
        seconds to finish and commit (each workflow's lease is released once its
        in-flight steps have committed); then the steps still running are cancelled
        (nothing is recorded for them: no failure, no retry) and their leases released.
        Either way other hosts continue the workflows at once, from their last
        committed step. A plain method, safe in a signal handler or any task on the
        host's event loop; from another thread use
        ``loop.call_soon_threadsafe(host.request_stop, timeout)``.

        Idempotent: a second call does not restart the stop; it can only bring the
        deadline forward (``request_stop(0)`` cancels at once), never push it back.
        Ignored once the host has stopped. :meth:`wait_for_shutdown` waits for the end.

        Raises:
            ValueError: ``timeout`` is negative.
            RuntimeError: called outside the event loop's thread.
        """
        if not timeout >= 0:
            raise ValueError(f"timeout must be 0 or more seconds, got {timeout!r}")
        if self._state == "stopped":
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "request_stop() must run on the host's event loop; from another thread "
                "use loop.call_soon_threadsafe(host.request_stop)"
            ) from None
        self._worker.begin_stop(timeout)
        if self._stop_task is None:
            log.info("stopping host %s: in-flight steps get %gs to finish", self.host_id, timeout)
            self._state = "stopping"
            self._stop_task = loop.create_task(self._shut_down(), name=f"wfe-stop-{self.host_id}")
            self._stop_task.add_done_callback(self._log_stop_failure)

    async def wait_for_shutdown(self, timeout: float | None = None) -> None:
        """Return once the host has stopped, whoever began the stop (a signal, another
        task); at once if it already has. Waiting does not begin a stop.

        Raises:
            TimeoutError: still not stopped after ``timeout`` seconds (the stop goes on).
            Exception: the error the stop itself failed with (the host is stopped anyway).
        """
        if not self._stopped.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._stopped.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"host {self.host_id} is still {self._state} after {timeout:g}s"
                ) from None
        task = self._stop_task
        error = task.exception() if task and task.done() and not task.cancelled() else None
        if error is not None:
            raise error

    async def cancel_running(self) -> int:
        """Force-cancel: cancel every workflow run in flight on this host, now.

        Each running step body gets ``CancelledError`` and nothing is recorded for it
        (no failure, no retry, its attempt number stays); the workflow's lease is
        released, so any host resumes it at once from its last committed step (the
        cancelled step runs again: step bodies run at least once). During a graceful
        stop this ends the wait and the stop completes. On a running host the
        workflows are due again at once, for any host, this one included.

        Returns:
            How many workflow runs were cancelled.
        """
        return await self._worker.cancel_running()

    def install_signal_handlers(
        self,
        timeout: float = 30.0,
        signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
    ) -> Callable[[], None]:
        """Stop this host on SIGTERM/SIGINT (Unix; call it on the running loop's main thread).

        The first signal begins a graceful stop (``request_stop(timeout)``); a second
        cancels the steps still running (``request_stop(0)``) and removes the handlers,
        so a third gets the previous behaviour back (for SIGINT under ``asyncio.run``,
        cancelling the main task; otherwise the default: KeyboardInterrupt or exit).
        The handlers are removed when the host stops. Uses ``loop.add_signal_handler``,
        which replaces a handler set that way before for the same signal::

            async with WorkflowHost.from_url(url) as host:
                host.install_signal_handlers(timeout=25)
                await host.wait_for_shutdown()

        Returns:
            A function that removes the handlers.

        Raises:
            ShuttingDown: the host has stopped already.
        """
        if self._state == "stopped":
            raise ShuttingDown(f"host {self.host_id} is stopped; no signal can stop it again")
        if self._signals is not None:
            self._signals.remove()
        self._signals = SignalHandlers(
            asyncio.get_running_loop(), signals, lambda signum: self._on_signal(signum, timeout)
        )
        return self._signals.remove

    def _on_signal(self, signum: int, timeout: float) -> None:
        name = signal.Signals(signum).name
        self._signals_received += 1
        if self._signals_received == 1:
            log.warning(
                "%s: stopping host %s gracefully, in-flight steps get %gs "
                "(send %s again to cancel them now)",
                name,
                self.host_id,
                timeout,
                name,
            )
            self.request_stop(timeout)
            return
        log.warning("%s again: cancelling the steps still running on host %s", name, self.host_id)
        self.request_stop(0)
        if self._signals is not None:
            self._signals.remove()

    async def _shut_down(self) -> None:
        """The stop itself; runs once, as a task, whoever asked for it."""
        try:
            await self._not_starting.wait()  # start() sees the stop and refuses to go on
            await self._worker.finish_stop()
            if self._cleanup_task is not None:
                self._cleanup_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._cleanup_task
            for task in self._pending_saves:
                with contextlib.suppress(Exception):
                    await task
            await self._hub.stop()
            # Set before closing: a call that starts meanwhile gets a clear error, not a
            # closed pool's.
            self._store_closed = self._owns_backend
            await self.close()
        finally:
            self._state = "stopped"
            if self._signals is not None:
                self._signals.remove()
            self._stopped.set()
            log.info("host %s stopped", self.host_id)

    def _log_stop_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("stopping host %s failed", self.host_id, exc_info=task.exception())

    async def ready(self) -> None:
        """Apply migrations once (see :meth:`WorkflowClient.ready`).

        Raises:
            ShuttingDown: the host has stopped and closed the store it opened.
        """
        if self._store_closed:
            raise ShuttingDown(
                f"host {self.host_id} is stopped and has closed its store; "
                "use a WorkflowClient (or a running host) to query or steer workflows"
            )
        await super().ready()

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
            ShuttingDown: the host is stopping or stopped.
        """
        if self._state in ("stopping", "stopped"):
            raise ShuttingDown(
                f"host {self.host_id} is {self._state}; start_workflow({definition_id!r}) is "
                "refused: start it through a running host or a WorkflowClient"
            )
        return await super().start_workflow(
            definition_id,
            data,
            version=version,
            reference=reference,
            idempotency_key=idempotency_key,
        )

    # -- internals ---------------------------------------------------------------------

    async def _create(self, new: NewWorkflow) -> tuple[WorkflowRecord, bool]:
        """Create a workflow this host can run now already leased to itself, and run it:
        no claim, no load, no wake-up of idle hosts (two fewer transactions for a
        lone workflow). Any other start is stored for whichever host claims it."""
        lease = None if new.pointers else self._worker.reserve(new.definition_id, new.version)
        if lease is None:
            return await super()._create(new)
        try:
            record, created = await self.backend.persistence.create_workflow(
                new.model_copy(update={"lease": lease})
            )
        except BaseException:
            await self._worker.adopt(None)
            raise
        # A start that found its idempotency key taken got that workflow as it is.
        if await self._worker.adopt(record if created else None):
            self._completions.expect(record.id)
        return record, created

    async def _resolve_start(
        self, definition_id: str, version: int | None
    ) -> tuple[int, str | None]:
        """The registered definition's version and source digest (its source stored
        first, so the store never refuses the digest); else the store's, as a client."""
        local = self._registry.get(definition_id, version)
        if local is None:
            return await super()._resolve_start(definition_id, version)
        if local.source is None:
            return local.version, None
        digest = local.source.digest
        if digest not in self._saved_sources:
            # Registered after start (saved in the background) or before it.
            await self._save_definition(local)
        return local.version, digest

    def _instance(
        self, record: WorkflowRecord, data_type: type[BaseModel] | None
    ) -> WorkflowInstance:
        # Typed with the model of the definition it runs against: an instance started
        # from an edited file keeps its own model (or comes back as a dict).
        return WorkflowInstance.from_record(record, data_type or self._stored.data_type(record))

    def _data_type(self, definition_id: str, version: int) -> type[BaseModel] | None:
        definition = self._registry.get(definition_id, version)
        return None if definition is None else definition.data_type

    async def _save_definition(self, definition: WorkflowDefinition) -> None:
        """Record the definition, with its source when it was built from one."""
        source = None if definition.source is None else definition.source.record()
        await self.backend.persistence.save_definition(
            DefinitionRecord(
                definition_id=definition.id,
                version=definition.version,
                fingerprint=definition.fingerprint,
                data_schema=definition.data_type.model_json_schema(),
            ),
            source,
        )
        if source is not None:
            self._saved_sources.add(source.digest)

    def _finished(self, record: WorkflowRecord) -> None:
        self._completions.finished(record)

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
