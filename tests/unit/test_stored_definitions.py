"""A host rebuilds a definition from a stored source once, keeps a bounded number of
them, and prefers its registered definition when it was built from the same text."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
from pydantic import BaseModel

from wfe import WorkflowBuilder
from wfe.registry import Registry
from wfe.sources import register_source_loader, unregister_source_loader
from wfe.stored import StoredDefinitions
from wfe_core.definition import DefinitionSource, WorkflowDefinition
from wfe_core.executor.run import DefinitionUnavailable
from wfe_core.models import DefinitionRecord, WorkflowRecord, WorkflowStatus
from wfe_core.testing import memory_backend

KIND = "unit-kind"


class Data(BaseModel):
    n: int = 0


async def step(ctx: Any) -> None:
    return None


builds: list[str] = []


def load(text: str, config: dict[str, Any]) -> WorkflowDefinition:
    builds.append(text)
    spec = json.loads(text)
    definition = WorkflowBuilder(spec["id"], data=Data).start_with(step).build()
    return dataclasses.replace(definition, source=DefinitionSource(KIND, text, config))


@pytest.fixture(autouse=True)
def loader():
    builds.clear()
    register_source_loader(KIND, load)
    yield
    unregister_source_loader(KIND)


def record(definition: WorkflowDefinition) -> WorkflowRecord:
    assert definition.source is not None
    return WorkflowRecord(
        id="wf",
        definition_id=definition.id,
        version=definition.version,
        status=WorkflowStatus.RUNNABLE,
        data="{}",
        create_time=0,
        source_digest=definition.source.digest,
    )


async def store_sources(backend: Any, *definitions: WorkflowDefinition) -> None:
    for definition in definitions:
        assert definition.source is not None
        await backend.persistence.save_definition(
            DefinitionRecord(definition_id=definition.id, version=1, fingerprint="f"),
            definition.source.record(),
        )


async def test_a_source_is_rebuilt_once_however_many_runs_need_it() -> None:
    backend = memory_backend()
    flow = load(json.dumps({"id": "flow", "rev": 1}), {})
    await store_sources(backend, flow)
    builds.clear()
    stored = StoredDefinitions(Registry(), backend.persistence)

    found = await asyncio.gather(*(stored.resolve(record(flow)) for _ in range(10)))
    assert len(builds) == 1
    assert all(d is found[0] for d in found) and found[0] is not None
    assert found[0].source == flow.source


async def test_the_cache_is_bounded_least_recently_used_first() -> None:
    backend = memory_backend()
    flows = [load(json.dumps({"id": "flow", "rev": i}), {}) for i in range(3)]
    await store_sources(backend, *flows)
    builds.clear()
    stored = StoredDefinitions(Registry(), backend.persistence, cache_size=2)

    for flow in (flows[0], flows[1], flows[0], flows[2], flows[0], flows[1]):
        await stored.resolve(record(flow))
    # 0, 1 built; 0 kept warm; 2 evicts 1; 0 still cached; 1 rebuilt.
    assert [json.loads(t)["rev"] for t in builds] == [0, 1, 2, 1]


async def test_a_registered_definition_of_the_same_source_is_used_as_is() -> None:
    backend = memory_backend()
    flow = load(json.dumps({"id": "flow"}), {})
    registry = Registry()
    registry.add(flow)
    stored = StoredDefinitions(registry, backend.persistence)
    assert await stored.resolve(record(flow)) is flow  # nothing read from the store


async def test_a_missing_source_is_unavailable() -> None:
    backend = memory_backend()
    flow = load(json.dumps({"id": "flow"}), {})
    stored = StoredDefinitions(Registry(), backend.persistence)
    with pytest.raises(DefinitionUnavailable, match="not in the store"):
        await stored.resolve(record(flow))


async def test_the_host_option_reaches_the_host_from_every_entrance() -> None:
    from wfe import WorkflowHost, WorkflowHostBuilder

    hosts = [
        WorkflowHost.from_url("memory://stored-option", serve_stored_definitions=True),
        WorkflowHostBuilder().use_url("memory://stored-option").serve_stored_definitions().build(),
        WorkflowHost(memory_backend(), serve_stored_definitions=True),
    ]
    assert all(host._stored.serve for host in hosts)
    assert not WorkflowHost(memory_backend())._stored.serve
