"""Contract: definition sources (the text a definition was built from) are stored once
per digest with their definitions, workflows carry the digest they run against, and
workers can list the sources that unfinished workflows still need."""

from __future__ import annotations

from typing import Any

import pytest

from wfe_core.errors import DefinitionNotFound, ProviderError, SourceNotFound
from wfe_core.models import (
    DefinitionRecord,
    DefinitionSourceRecord,
    WorkflowQuery,
    WorkflowStatus,
    source_digest,
)
from wfe_core.ports.backend import Backend

from .support import CLOCK_SLACK_MS, claim_only, commit_for, create, new_workflow

SUSPEND_FROM = frozenset({WorkflowStatus.RUNNABLE})
TERMINATE_FROM = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})


def source(
    text: str = "steps: [a, b]", kind: str = "test-kind", **config: object
) -> DefinitionSourceRecord:
    config = config or {"env": "prod", "n": [1, 2]}
    return DefinitionSourceRecord(
        digest=source_digest(kind, text, config), kind=kind, text=text, config=config
    )


def definition(
    definition_id: str = "contract-flow", version: int = 1, **fields: Any
) -> DefinitionRecord:
    return DefinitionRecord(definition_id=definition_id, version=version, fingerprint="f", **fields)


async def test_a_saved_source_reads_back_with_the_definition_digest(backend: Backend) -> None:
    store = backend.persistence
    src = source(text="ünï: ✓\nsteps: [a]")
    before = store.now_ms()
    await store.save_definition(definition(), src)
    after = store.now_ms()

    stored = await store.get_source(src.digest)
    assert (stored.digest, stored.kind, stored.text, stored.config) == (
        src.digest,
        "test-kind",
        "ünï: ✓\nsteps: [a]",
        {"env": "prod", "n": [1, 2]},
    )
    assert before - CLOCK_SLACK_MS <= stored.created_at <= after + CLOCK_SLACK_MS
    assert (await store.get_definition("contract-flow", 1)).source_digest == src.digest
    assert (await store.get_definition("contract-flow", None)).source_digest == src.digest


async def test_a_definition_without_a_source_has_no_digest(backend: Backend) -> None:
    await backend.persistence.save_definition(definition())
    assert (await backend.persistence.get_definition("contract-flow", 1)).source_digest is None


async def test_saving_a_source_again_is_idempotent(backend: Backend) -> None:
    store = backend.persistence
    src = source()
    await store.save_definition(definition(), src)
    first = await store.get_source(src.digest)
    await store.save_definition(definition(), src)
    # Another definition built from the same text shares the one stored copy.
    await store.save_definition(definition("other-flow"), src.model_copy())

    assert await store.get_source(src.digest) == first
    assert (await store.get_definition("other-flow", 1)).source_digest == src.digest


async def test_a_new_source_for_a_definition_keeps_the_old_one(backend: Backend) -> None:
    store = backend.persistence
    old, new = source("v: old"), source("v: new")
    await store.save_definition(definition(), old)
    await store.save_definition(definition(), new)

    assert (await store.get_definition("contract-flow", 1)).source_digest == new.digest
    assert (await store.get_source(old.digest)).text == "v: old"
    assert (await store.get_source(new.digest)).text == "v: new"


async def test_saving_back_to_code_clears_the_digest(backend: Backend) -> None:
    store = backend.persistence
    await store.save_definition(definition(), source())
    await store.save_definition(definition())
    assert (await store.get_definition("contract-flow", 1)).source_digest is None


async def test_a_definition_may_name_a_stored_source_by_digest(backend: Backend) -> None:
    store = backend.persistence
    src = source()
    await store.save_definition(definition("first"), src)
    await store.save_definition(definition("second", source_digest=src.digest))
    assert (await store.get_definition("second", 1)).source_digest == src.digest


async def test_an_unknown_source_is_source_not_found(backend: Backend) -> None:
    missing = source().digest
    with pytest.raises(SourceNotFound) as caught:
        await backend.persistence.get_source(missing)
    assert caught.value.digest == missing
    assert missing[:12] in str(caught.value)
    assert isinstance(caught.value, DefinitionNotFound)


async def test_a_definition_naming_a_missing_source_is_refused(backend: Backend) -> None:
    store = backend.persistence
    digest = source().digest
    with pytest.raises(SourceNotFound):
        await store.save_definition(definition(source_digest=digest))
    with pytest.raises(DefinitionNotFound):
        await store.get_definition("contract-flow", 1)


@pytest.mark.parametrize("flaw", ["digest", "record"])
async def test_an_inconsistent_source_is_refused_and_nothing_stored(
    backend: Backend, flaw: str
) -> None:
    store = backend.persistence
    src = source()
    if flaw == "digest":
        src = src.model_copy(update={"text": "edited after hashing"})
        record = definition()
    else:
        record = definition(source_digest=source("another").digest)
    with pytest.raises(ProviderError, match="source"):
        await store.save_definition(record, src)
    with pytest.raises(DefinitionNotFound):
        await store.get_definition("contract-flow", 1)
    with pytest.raises(SourceNotFound):
        await store.get_source(src.digest)


async def test_the_digest_round_trips_on_workflows(backend: Backend) -> None:
    store = backend.persistence
    src = source()
    await store.save_definition(definition(), src)
    record = await create(backend, source_digest=src.digest)
    plain = await create(backend)

    assert record.source_digest == src.digest
    assert (await store.get_workflow(record.id)).source_digest == src.digest
    assert (await store.get_workflow(plain.id)).source_digest is None
    listed = {r.id: r.source_digest for r in await store.list_workflows(WorkflowQuery())}
    assert listed == {record.id: src.digest, plain.id: None}
    claim = await claim_only(backend, record.id, limit=1)
    assert (await store.load_state(claim)).record.source_digest == src.digest


async def test_a_workflow_naming_a_missing_source_is_refused_with_nothing_stored(
    backend: Backend,
) -> None:
    store = backend.persistence
    digest = source().digest
    new = new_workflow(source_digest=digest, idempotency_key="k-1")
    with pytest.raises(SourceNotFound) as caught:
        await store.create_workflow(new)
    assert caught.value.digest == digest
    assert "contract-flow" in str(caught.value)
    assert await store.list_workflows(WorkflowQuery()) == []
    # Neither the id nor the idempotency key was taken.
    await store.save_definition(definition(), source())
    record, created = await store.create_workflow(new)
    assert created and record.id == new.id


async def test_a_taken_idempotency_key_wins_over_a_missing_source(backend: Backend) -> None:
    store = backend.persistence
    first = await create(backend, idempotency_key="k-1")
    again, created = await store.create_workflow(
        new_workflow(idempotency_key="k-1", source_digest=source().digest)
    )
    assert (again.id, created) == (first.id, False)


async def test_pinned_definitions_lists_only_unfinished_sourced_workflows(
    backend: Backend,
) -> None:
    store = backend.persistence
    a, b, c = source("a"), source("b"), source("c")
    for src in (a, b, c):
        await store.save_definition(definition(), src)
    await store.save_definition(definition("other-flow", 2), a)
    assert await store.pinned_definitions() == []

    runnable = [await create(backend, source_digest=a.digest) for _ in range(2)]
    await create(backend, definition_id="other-flow", version=2, source_digest=a.digest)
    suspended = await create(backend, source_digest=b.digest)
    await store.set_status(suspended.id, "suspend", SUSPEND_FROM, WorkflowStatus.SUSPENDED)
    terminated = await create(backend, source_digest=c.digest)
    await store.set_status(terminated.id, "terminate", TERMINATE_FROM, WorkflowStatus.TERMINATED)
    await create(backend)  # code-defined: no source

    expected = {
        ("contract-flow", 1, a.digest),
        ("contract-flow", 1, b.digest),
        ("other-flow", 2, a.digest),
    }
    pinned = await store.pinned_definitions()
    assert len(pinned) == len(set(pinned)) and set(pinned) == expected

    # Completing both workflows of (contract-flow, 1, a) unpins it.
    for record in runnable:
        claim = await claim_only(backend, record.id, limit=1)
        await store.commit(commit_for(claim, status=WorkflowStatus.COMPLETE, release=True))
    assert set(await store.pinned_definitions()) == expected - {("contract-flow", 1, a.digest)}
