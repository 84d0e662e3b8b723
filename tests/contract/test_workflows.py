"""Contract: creating, reading and listing workflows; idempotency; definitions."""

from __future__ import annotations

import asyncio
import json

import pytest

from wfe_core.errors import DefinitionNotFound, NotFound, SourceNotFound
from wfe_core.models import (
    DefinitionRecord,
    WorkflowQuery,
    WorkflowStatus,
)
from wfe_core.ports.backend import Backend

from .support import CLOCK_SLACK_MS, create, new_id, new_workflow, plain, pointer

SUSPEND_FROM = frozenset({WorkflowStatus.RUNNABLE})
UNKNOWN_IDS = [
    "",
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    "x" * 300,
    "'; DROP TABLE workflows; --",
    "wf-ünïcode",
]


async def test_create_stores_a_runnable_workflow_with_store_time(backend: Backend) -> None:
    store = backend.persistence
    new = new_workflow(data={"n": 1, "name": "ünï"}, reference="order-1")
    before = store.now_ms()
    record, created = await store.create_workflow(new)
    after = store.now_ms()

    assert created
    assert (record.id, record.definition_id, record.version) == (new.id, new.definition_id, 1)
    assert record.reference == "order-1"
    assert json.loads(record.data) == {"n": 1, "name": "ünï"}
    assert record.status is WorkflowStatus.RUNNABLE
    assert (record.error, record.complete_time, record.lease_owner) == (None, None, None)
    assert record.recoveries == 0
    assert before - CLOCK_SLACK_MS <= record.create_time <= after + CLOCK_SLACK_MS
    assert record.next_execution is not None and record.next_execution <= after
    assert plain(await store.get_workflow(new.id)) == plain(record)


async def test_create_keeps_an_explicit_next_execution(backend: Backend) -> None:
    later = backend.persistence.now_ms() + 60_000
    waiting = await create(backend, next_execution=None)
    sleeping = await create(backend, next_execution=later)

    assert (await backend.persistence.get_workflow(waiting.id)).next_execution is None
    assert (await backend.persistence.get_workflow(sleeping.id)).next_execution == later


async def test_returned_records_are_copies(backend: Backend) -> None:
    record = await create(backend, data={"n": 1})
    record.status = WorkflowStatus.FAILED
    record.data = "{}"
    (await backend.persistence.get_pointers(record.id))[0].step_name = "changed"

    stored = await backend.persistence.get_workflow(record.id)
    assert stored.status is WorkflowStatus.RUNNABLE
    assert json.loads(stored.data) == {"n": 1}
    assert (await backend.persistence.get_pointers(record.id))[0].step_name == "step-0"


@pytest.mark.parametrize("workflow_id", UNKNOWN_IDS)
async def test_unknown_or_malformed_ids_raise_not_found(backend: Backend, workflow_id: str) -> None:
    await create(backend)
    store = backend.persistence
    with pytest.raises(NotFound) as caught:
        await store.get_workflow(workflow_id)
    assert caught.value.workflow_id == workflow_id
    with pytest.raises(NotFound):
        await store.get_pointers(workflow_id)
    with pytest.raises(NotFound):
        await store.set_status(workflow_id, "suspend", SUSPEND_FROM, WorkflowStatus.SUSPENDED)


async def test_same_idempotency_key_returns_the_first_workflow_unchanged(
    backend: Backend,
) -> None:
    store = backend.persistence
    first, created = await store.create_workflow(new_workflow(idempotency_key="k1", data={"n": 1}))
    again = new_workflow(idempotency_key="k1", data={"n": 2}, reference="other")
    second, created_again = await store.create_workflow(again)

    assert created and not created_again
    assert plain(second) == plain(first)
    assert json.loads((await store.get_workflow(first.id)).data) == {"n": 1}
    with pytest.raises(NotFound):
        await store.get_workflow(again.id)
    assert len(await store.list_workflows(WorkflowQuery())) == 1


async def test_concurrent_creates_with_one_key_make_one_row(backend: Backend) -> None:
    store = backend.persistence
    results = await asyncio.gather(
        *(store.create_workflow(new_workflow(idempotency_key="once")) for _ in range(20))
    )

    assert len({record.id for record, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    rows = await store.list_workflows(WorkflowQuery())
    assert [r.id for r in rows] == [results[0][0].id]
    assert len(await store.get_pointers(rows[0].id)) == 1


async def test_distinct_or_missing_keys_make_distinct_rows(backend: Backend) -> None:
    ids = {(await create(backend, idempotency_key=key)).id for key in ("a", "b", None, None)}
    assert len(ids) == 4
    assert len(await backend.persistence.list_workflows(WorkflowQuery())) == 4


async def test_list_filters_newest_first_and_pages(backend: Backend) -> None:
    store = backend.persistence
    created = []
    for i, definition in enumerate(["a", "a", "b", "a", "b"]):
        created.append(await create(backend, definition_id=definition, reference=f"r{i}"))
        await asyncio.sleep(0.005)  # distinct create times, so "newest first" is one order
    await store.set_status(created[1].id, "suspend", SUSPEND_FROM, WorkflowStatus.SUSPENDED)
    newest_first = [r.id for r in reversed(created)]

    async def ids(**filters: object) -> list[str]:
        return [r.id for r in await store.list_workflows(WorkflowQuery.model_validate(filters))]

    assert await ids() == newest_first
    assert await ids(definition_id="b") == [created[4].id, created[2].id]
    assert await ids(status=WorkflowStatus.SUSPENDED) == [created[1].id]
    assert await ids(status=WorkflowStatus.RUNNABLE, definition_id="a") == [
        created[3].id,
        created[0].id,
    ]
    assert await ids(reference="r3") == [created[3].id]
    assert await ids(definition_id="missing") == []
    pages = [await ids(limit=2, offset=offset) for offset in (0, 2, 4, 6)]
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:], []]


async def test_pointers_come_back_oldest_first(backend: Backend) -> None:
    # Ids sort against creation order, so an ORDER BY id would show up.
    pointers = [pointer(new_id("z-"), 0), pointer(new_id("m-"), 1), pointer(new_id("a-"), 2)]
    record = await create(backend, pointers=pointers)
    stored = await backend.persistence.get_pointers(record.id)
    assert stored == pointers


async def test_definitions_save_get_latest_and_update(backend: Backend) -> None:
    store = backend.persistence
    v1 = DefinitionRecord(definition_id="orders", version=1, fingerprint="f1")
    v2 = DefinitionRecord(
        definition_id="orders",
        version=2,
        fingerprint="f2",
        data_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
    )
    await store.save_definition(v2)
    await store.save_definition(v1)

    latest = await store.get_definition("orders", None)
    assert (latest.version, latest.fingerprint, latest.data_schema) == (2, "f2", v2.data_schema)
    assert (await store.get_definition("orders", 1)).fingerprint == "f1"

    await store.save_definition(v1.model_copy(update={"fingerprint": "f1-new"}))
    assert (await store.get_definition("orders", 1)).fingerprint == "f1-new"
    assert (await store.get_definition("orders", None)).version == 2


async def test_unknown_definitions_raise_definition_not_found(backend: Backend) -> None:
    store = backend.persistence
    await store.save_definition(
        DefinitionRecord(definition_id="orders", version=1, fingerprint="f")
    )

    with pytest.raises(DefinitionNotFound) as caught:
        await store.get_definition("missing", None)
    assert caught.value.definition_id == "missing"
    with pytest.raises(DefinitionNotFound) as caught:
        await store.get_definition("orders", 2)
    assert (caught.value.definition_id, caught.value.version) == ("orders", 2)


async def test_get_workflows_reads_many_ids_at_once_and_skips_unknown_ones(
    backend: Backend,
) -> None:
    store = backend.persistence
    running = await create(backend)
    done = await create(backend)
    await store.set_status(
        done.id, "terminate", frozenset({WorkflowStatus.RUNNABLE}), WorkflowStatus.TERMINATED
    )
    many = [await create(backend) for _ in range(3)]
    asked = [running.id, done.id, *UNKNOWN_IDS, done.id, *(r.id for r in many)]

    found = {r.id: r for r in await store.get_workflows(asked)}
    assert set(found) == {running.id, done.id, *(r.id for r in many)}
    assert plain(found[running.id]) == plain(await store.get_workflow(running.id))
    assert found[done.id].status is WorkflowStatus.TERMINATED

    finished = await store.get_workflows(asked, finished_only=True)
    assert [r.id for r in finished] == [done.id]
    assert await store.get_workflows([]) == []


async def test_get_workflows_reads_more_ids_than_one_statement_takes(backend: Backend) -> None:
    made = {(await create(backend)).id for _ in range(3)}
    asked = [new_id("missing") for _ in range(1200)] + sorted(made)
    assert {r.id for r in await backend.persistence.get_workflows(asked)} == made


async def test_concurrent_starts_each_get_their_own_workflow_and_a_bad_one_fails_alone(
    backend: Backend,
) -> None:
    store = backend.persistence
    news = [new_workflow(data={"i": i}) for i in range(300)]
    bad = new_workflow(source_digest="0" * 64)  # names no stored source
    outcomes = await asyncio.gather(
        *(store.create_workflow(n) for n in [*news[:150], bad, *news[150:]]),
        return_exceptions=True,
    )
    failed = outcomes.pop(150)
    assert isinstance(failed, SourceNotFound)
    assert all(not isinstance(o, BaseException) for o in outcomes)
    records = [o[0] for o in outcomes if not isinstance(o, BaseException)]
    assert [r.id for r in records] == [n.id for n in news]
    assert [json.loads(r.data) for r in records] == [{"i": i} for i in range(300)]
    stored = {r.id: r for r in await store.get_workflows([n.id for n in news])}
    assert [plain(stored[r.id]) for r in records] == [plain(r) for r in records]
    with pytest.raises(NotFound):
        await store.get_workflow(bad.id)
