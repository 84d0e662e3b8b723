"""Hosts for scenario tests: short leases and polls, on the backend under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from wfe import WorkflowHost
from wfe_core.ports.backend import Backend

HostFactory = Callable[..., WorkflowHost]


@pytest.fixture
async def make_host(backend: Backend) -> AsyncIterator[HostFactory]:
    """Build hosts over the test's backend; every host is stopped after the test."""
    hosts: list[WorkflowHost] = []

    def make(**options: Any) -> WorkflowHost:
        settings: dict[str, Any] = {"lease": 2.0, "poll_interval": 0.1, "log_events": False}
        settings.update(options)
        host = WorkflowHost(backend, **settings)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        await host.stop(timeout=2)


async def snapshot(backend: Backend) -> list[Any]:
    """Everything stored about every workflow, to prove an operation changed nothing."""
    from wfe_core.models import WorkflowQuery

    records = await backend.persistence.list_workflows(WorkflowQuery(limit=100_000))
    out: list[Any] = []
    for record in sorted(records, key=lambda r: r.id):
        pointers = await backend.persistence.get_pointers(record.id)
        # Lease renewals move the expiry of in-flight work; nothing else may change.
        stored = record.model_dump(exclude={"lease_expires_at"})
        out.append((stored, sorted((p.model_dump() for p in pointers), key=str)))
    return out
