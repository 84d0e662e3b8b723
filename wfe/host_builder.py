"""WorkflowHostBuilder: assemble a host from explicit providers."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from wfe import backends
from wfe.host import WorkflowHost
from wfe_core.lifecycle import LifecycleHub
from wfe_core.ports import Backend, LockProvider, PersistenceProvider, QueueProvider, SearchIndex
from wfe_core.retry import RetryPolicy


class WorkflowHostBuilder:
    """Build a host from a URL or from explicit persistence/queue/lock/search providers.

    Example::

        host = (WorkflowHostBuilder()
                .use_url("sqlite:///wfe.db")
                .lease(5).poll_interval(0.5)
                .build())
    """

    def __init__(self) -> None:
        self._backend: Backend | None = None
        self._persistence: PersistenceProvider | None = None
        self._queue: QueueProvider | None = None
        self._lock: LockProvider | None = None
        self._search: SearchIndex | None = None
        self._lifecycle: LifecycleHub | None = None
        self._valkey: str | None = None
        self._options: dict[str, Any] = {}

    def use_url(self, url: str) -> WorkflowHostBuilder:
        """Take every provider from the backend of ``url``; explicit ones override."""
        self._backend = backends.open_backend(url)
        return self

    def use_persistence(self, provider: PersistenceProvider) -> WorkflowHostBuilder:
        self._persistence = provider
        return self

    def use_queue(self, provider: QueueProvider) -> WorkflowHostBuilder:
        self._queue = provider
        return self

    def use_lock(self, provider: LockProvider) -> WorkflowHostBuilder:
        self._lock = provider
        return self

    def use_search(self, index: SearchIndex) -> WorkflowHostBuilder:
        self._search = index
        return self

    def use_valkey(self, url: str) -> WorkflowHostBuilder:
        """Put the queue and the lock in Valkey/Redis at ``url``
        (``redis://host:6379/0?prefix=wfe``), keeping the database as the source of
        truth and the fence (see :func:`wfe_valkey.with_valkey`).

        Raises:
            ValueError: the URL is malformed.
        """
        from wfe_valkey.url import parse_url

        parse_url(url)  # refused here, where the mistake was made, not at build()
        self._valkey = url
        return self

    def use_lifecycle(self, hub: LifecycleHub) -> WorkflowHostBuilder:
        self._lifecycle = hub
        return self

    def lease(self, seconds: float) -> WorkflowHostBuilder:
        self._options["lease"] = seconds
        return self

    def poll_interval(self, seconds: float) -> WorkflowHostBuilder:
        self._options["poll_interval"] = seconds
        return self

    def max_concurrent_workflows(self, n: int) -> WorkflowHostBuilder:
        self._options["max_concurrent_workflows"] = n
        return self

    def max_recovery_attempts(self, n: int | None) -> WorkflowHostBuilder:
        self._options["max_recovery_attempts"] = n
        return self

    def auto_migrate(self, enabled: bool) -> WorkflowHostBuilder:
        self._options["auto_migrate"] = enabled
        return self

    def default_retry(self, policy: RetryPolicy) -> WorkflowHostBuilder:
        self._options["default_retry"] = policy
        return self

    def cleanup(self, ttl: timedelta, interval: float = 300.0) -> WorkflowHostBuilder:
        self._options.update(cleanup_ttl=ttl, cleanup_interval=interval)
        return self

    def log_events(self, enabled: bool) -> WorkflowHostBuilder:
        self._options["log_events"] = enabled
        return self

    def serve_stored_definitions(self, enabled: bool = True) -> WorkflowHostBuilder:
        """Also run workflows of definitions the host never registered, rebuilt from
        their stored sources (see ``WorkflowHost``)."""
        self._options["serve_stored_definitions"] = enabled
        return self

    def build(self) -> WorkflowHost:
        """The host; raises ``ValueError`` when a provider is missing."""
        base = self._backend
        persistence = self._persistence or (base.persistence if base else None)
        queue = self._queue or (base.queue if base else None)
        lock = self._lock or (base.lock if base else None)
        missing = [
            n
            for n, p in (("persistence", persistence), ("queue", queue), ("lock", lock))
            if p is None
        ]
        if missing:
            raise ValueError(
                f"WorkflowHostBuilder needs {', '.join(missing)}: call use_url() "
                "or the use_* methods"
            )
        assert persistence is not None and queue is not None and lock is not None
        search = self._search or (base.search if base else None)
        # replace() keeps what the URL's backend closes besides its persistence (its
        # Valkey client, say), where a new Backend would leak it.
        backend = (
            replace(base, persistence=persistence, queue=queue, lock=lock, search=search)
            if base is not None
            else Backend(persistence, queue, lock, search)
        )
        if self._valkey is not None:
            from wfe_valkey.backend import with_valkey

            backend = with_valkey(backend, self._valkey)
        return WorkflowHost(backend, owns_backend=True, lifecycle=self._lifecycle, **self._options)
