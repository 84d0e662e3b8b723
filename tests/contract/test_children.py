"""Contract: sub-workflows in the store. A workflow with a parent publishes
CHILD_FINISHED_EVENT in the transaction that finishes it (commit or terminate), once;
terminate cascades down the parent_id tree and fences the descendants' owners."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wfe.client import WorkflowClient
from wfe_core.errors import InvalidStateTransition, LeaseLost, NotFound
from wfe_core.models import (
    CHILD_FINISHED_EVENT,
    DefinitionRecord,
    Event,
    EventSubscription,
    NewWorkflow,
    WorkflowQuery,
    WorkflowRecord,
    WorkflowStatus,
)
from wfe_core.ports.backend import Backend

from .support import (
    CLOCK_SLACK_MS,
    DEFINITION,
    ELIGIBLE,
    claim_only,
    commit_for,
    create,
    new_id,
    new_workflow,
    snapshot,
    subscription,
)

UNFINISHED = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})
READER = "contract-reader"  # a definition apart, so reading events claims nothing else


async def child_events(backend: Backend, child_id: str) -> list[Event]:
    """Every stored child-finished event of ``child_id``, oldest first.

    A reader workflow finds the earliest and takes delivery of it, so that its next
    look finds the next one (the stores have no "list events").
    """
    store = backend.persistence
    reader = await create(backend, definition_id=READER)
    claim = await claim_only(backend, reader.id, "reader", eligible=[(READER, 1)])
    sub = subscription(reader.id, name=CHILD_FINISHED_EVENT, key=child_id)
    found: list[Event] = []
    for _ in range(10):
        hit = (await store.find_events(reader.id, [sub])).get(sub.id)
        if hit is None:
            break
        found.append(hit)
        await store.commit(commit_for(claim, delivered_events=[hit.id]))
    await store.commit(commit_for(claim, status=WorkflowStatus.COMPLETE))
    return found


async def waiting_parent(
    backend: Backend, child_id: str
) -> tuple[WorkflowRecord, EventSubscription]:
    """A parent that subscribed to ``child_id``'s end and went idle (lease given up)."""
    parent = await create(backend)
    claim = await claim_only(backend, parent.id)
    sub = subscription(parent.id, name=CHILD_FINISHED_EVENT, key=child_id)
    await backend.persistence.commit(
        commit_for(claim, new_subscriptions=[sub], next_execution=None, release=True)
    )
    return parent, sub


def expected_data(
    child: WorkflowRecord, status: WorkflowStatus, data: Any, error: str | None
) -> Any:
    return {
        "workflow_id": child.id,
        "definition_id": child.definition_id,
        "version": child.version,
        "status": status.value,
        "data": data,
        "error": error,
    }


async def test_parent_id_is_stored_and_read_back(backend: Backend) -> None:
    store = backend.persistence
    parent = await create(backend)
    child = await create(backend, parent_id=parent.id)

    assert (parent.parent_id, child.parent_id) == (None, parent.id)
    assert (await store.get_workflow(child.id)).parent_id == parent.id
    listed = await store.list_workflows(WorkflowQuery(definition_id=DEFINITION))
    assert {r.id: r.parent_id for r in listed} == {parent.id: None, child.id: parent.id}


@pytest.mark.parametrize(
    ("status", "error"), [(WorkflowStatus.COMPLETE, None), (WorkflowStatus.FAILED, "step x: boom")]
)
async def test_a_finishing_child_publishes_one_event_and_wakes_its_parent(
    backend: Backend, status: WorkflowStatus, error: str | None
) -> None:
    store = backend.persistence
    child_id = new_id("child-")
    parent, sub = await waiting_parent(backend, child_id)
    child = await create(backend, id=child_id, parent_id=parent.id, data={"n": 0})
    claim = await claim_only(backend, child.id)
    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []  # parent idle
    final = {"n": 5, "name": "ünï", "items": [1, {"a": None}]}

    await store.commit(commit_for(claim, data=json.dumps(final), status=status, error=error))

    # The parent is due, and its subscription finds the event.
    woken = await claim_only(backend, parent.id, "host-b")
    found = await store.find_events(woken.workflow_id, [sub])
    [event] = await child_events(backend, child.id)
    assert found == {sub.id: event}
    assert (event.name, event.key) == (CHILD_FINISHED_EVENT, child.id)
    assert event.data == expected_data(child, status, final, error)
    stored = await store.get_workflow(child.id)
    assert stored.complete_time is not None
    assert abs(event.event_time - stored.complete_time) <= CLOCK_SLACK_MS


async def test_the_event_carries_the_stored_data_when_the_commit_writes_none(
    backend: Backend,
) -> None:
    store = backend.persistence
    parent = await create(backend, next_execution=None)
    child = await create(backend, parent_id=parent.id, data={"n": 7})
    claim = await claim_only(backend, child.id)

    await store.commit(commit_for(claim, status=WorkflowStatus.COMPLETE))

    [event] = await child_events(backend, child.id)
    assert event.data == expected_data(child, WorkflowStatus.COMPLETE, {"n": 7}, None)


async def test_a_repeated_finishing_commit_publishes_no_second_event(backend: Backend) -> None:
    store = backend.persistence
    parent = await create(backend, next_execution=None)
    child = await create(backend, parent_id=parent.id)
    claim = await claim_only(backend, child.id)
    finish = commit_for(claim, data=json.dumps({"n": 1}), status=WorkflowStatus.COMPLETE)
    await store.commit(finish)
    before = await snapshot(backend, child.id)

    with pytest.raises(LeaseLost):
        await store.commit(finish)

    assert await snapshot(backend, child.id) == before
    assert len(await child_events(backend, child.id)) == 1


async def test_a_terminated_child_publishes_its_event(backend: Backend) -> None:
    store = backend.persistence
    child_id = new_id("child-")
    parent, sub = await waiting_parent(backend, child_id)
    child = await create(backend, id=child_id, parent_id=parent.id, data={"n": 0})
    claim = await claim_only(backend, child.id)
    await store.commit(commit_for(claim, data=json.dumps({"n": 3})))  # progress, lease kept

    terminated = await store.set_status(
        child.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED
    )

    assert terminated.status is WorkflowStatus.TERMINATED
    [event] = await child_events(backend, child.id)
    assert event.data == expected_data(child, WorkflowStatus.TERMINATED, {"n": 3}, None)
    woken = await claim_only(backend, parent.id, "host-b")
    assert (await store.find_events(woken.workflow_id, [sub]))[sub.id].id == event.id
    with pytest.raises(LeaseLost):
        await store.commit(commit_for(claim, status=WorkflowStatus.COMPLETE))
    assert len(await child_events(backend, child.id)) == 1


async def test_terminating_a_finished_child_is_refused_and_publishes_nothing_more(
    backend: Backend,
) -> None:
    store = backend.persistence
    parent = await create(backend, next_execution=None)
    child = await create(backend, parent_id=parent.id)
    claim = await claim_only(backend, child.id)
    await store.commit(commit_for(claim, status=WorkflowStatus.COMPLETE))

    with pytest.raises(InvalidStateTransition):
        await store.set_status(child.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)

    [event] = await child_events(backend, child.id)
    assert event.data["status"] == "COMPLETE"


async def test_a_workflow_without_a_parent_publishes_nothing(backend: Backend) -> None:
    store = backend.persistence
    completed = await create(backend)
    claim = await claim_only(backend, completed.id)
    await store.commit(commit_for(claim, status=WorkflowStatus.COMPLETE))
    terminated = await create(backend, next_execution=None)
    await store.set_status(terminated.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)

    assert await child_events(backend, completed.id) == []
    assert await child_events(backend, terminated.id) == []


async def test_a_subscription_made_after_the_child_finished_still_finds_the_event(
    backend: Backend,
) -> None:
    store = backend.persistence
    parent = await create(backend)
    parent_claim = await claim_only(backend, parent.id)  # its step is still running
    child = await create(backend, parent_id=parent.id)
    child_claim = await claim_only(backend, child.id)
    await store.commit(commit_for(child_claim, status=WorkflowStatus.COMPLETE))
    sub = subscription(parent.id, name=CHILD_FINISHED_EVENT, key=child.id, as_of=parent.create_time)

    # The parent's step commits its wait after the child's end: it must not sleep.
    await store.commit(
        commit_for(parent_claim, new_subscriptions=[sub], next_execution=None, release=True)
    )

    woken = await claim_only(backend, parent.id, "host-b")
    [event] = await child_events(backend, child.id)
    assert (await store.find_events(woken.workflow_id, [sub]))[sub.id].id == event.id


async def test_terminate_cascades_to_unfinished_descendants(backend: Backend) -> None:
    store = backend.persistence
    root = await create(backend, next_execution=None)
    running = await create(backend, parent_id=root.id)
    running_claim = await claim_only(backend, running.id)  # its owner is mid-step
    paused = await create(backend, parent_id=root.id, next_execution=None)
    await store.set_status(paused.id, "suspend", UNFINISHED, WorkflowStatus.SUSPENDED)
    done = await create(backend, parent_id=root.id)
    under_done = await create(backend, parent_id=done.id, next_execution=None)  # orphaned next
    await store.commit(
        commit_for(await claim_only(backend, done.id), status=WorkflowStatus.COMPLETE)
    )
    grandchild = await create(backend, parent_id=running.id, next_execution=None)
    failed_grandchild = await create(backend, parent_id=running.id)
    await store.commit(
        commit_for(await claim_only(backend, failed_grandchild.id), status=WorkflowStatus.FAILED)
    )
    great_grandchild = await create(backend, parent_id=grandchild.id)
    great_claim = await claim_only(backend, great_grandchild.id)
    stranger = await create(backend, next_execution=None)
    before = store.now_ms()

    terminated = await store.set_status(root.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)

    assert terminated.status is WorkflowStatus.TERMINATED
    for wid in (running.id, paused.id, grandchild.id, great_grandchild.id, under_done.id):
        stored = await store.get_workflow(wid)
        assert stored.status is WorkflowStatus.TERMINATED, wid
        assert stored.complete_time is not None
        assert before - CLOCK_SLACK_MS <= stored.complete_time <= store.now_ms() + CLOCK_SLACK_MS
        assert (stored.lease_owner, stored.lease_expires_at, stored.next_execution) == (
            None,
            None,
            None,
        )
    finished_before = {
        done.id: WorkflowStatus.COMPLETE,
        failed_grandchild.id: WorkflowStatus.FAILED,
    }
    for wid, status in finished_before.items():
        assert (await store.get_workflow(wid)).status is status
    assert (await store.get_workflow(stranger.id)).status is WorkflowStatus.RUNNABLE
    # The owners mid-step are fenced off, and nothing is left to claim.
    for claim in (running_claim, great_claim):
        with pytest.raises(LeaseLost):
            await store.commit(commit_for(claim, data="{}", status=WorkflowStatus.COMPLETE))
    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []
    # Only the workflows that finished on their own told their parents.
    for wid in (running.id, paused.id, grandchild.id, great_grandchild.id, under_done.id):
        assert await child_events(backend, wid) == [], wid
    assert len(await child_events(backend, done.id)) == 1


async def test_terminating_a_child_leaves_its_parent_and_siblings_alone(backend: Backend) -> None:
    store = backend.persistence
    root = await create(backend, next_execution=None)
    child = await create(backend, parent_id=root.id, next_execution=None)
    sibling = await create(backend, parent_id=root.id, next_execution=None)
    grandchild = await create(backend, parent_id=child.id, next_execution=None)

    await store.set_status(child.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)

    statuses = {wid: (await store.get_workflow(wid)).status for wid in (root.id, sibling.id)}
    assert statuses == {root.id: WorkflowStatus.RUNNABLE, sibling.id: WorkflowStatus.RUNNABLE}
    assert (await store.get_workflow(grandchild.id)).status is WorkflowStatus.TERMINATED
    assert [e.data["status"] for e in await child_events(backend, child.id)] == ["TERMINATED"]


async def test_set_status_of_an_unknown_id_raises_not_found_and_changes_nothing(
    backend: Backend,
) -> None:
    store = backend.persistence
    root = await create(backend, next_execution=None)
    child = await create(backend, parent_id=root.id, next_execution=None)
    before = [await snapshot(backend, wid) for wid in (root.id, child.id)]

    for to in (WorkflowStatus.TERMINATED, WorkflowStatus.SUSPENDED):
        with pytest.raises(NotFound):
            await store.set_status(new_id("wf-"), "terminate", UNFINISHED, to)

    assert [await snapshot(backend, wid) for wid in (root.id, child.id)] == before
    assert await child_events(backend, child.id) == []


async def test_the_client_starts_a_child_with_its_parent(backend: Backend) -> None:
    await backend.persistence.save_definition(
        DefinitionRecord(definition_id=DEFINITION, version=1, fingerprint="f")
    )
    client = WorkflowClient(backend, auto_migrate=False)
    parent_id = await client.start_workflow(DEFINITION, {"n": 1})
    child_id = await client.start_workflow(
        DEFINITION, {"n": 2}, parent_id=parent_id, idempotency_key="child-of-step-1"
    )
    again = await client.start_workflow(
        DEFINITION, {"n": 3}, parent_id=parent_id, idempotency_key="child-of-step-1"
    )

    assert again == child_id
    assert (await client.get_workflow(parent_id)).parent_id is None
    child = await client.get_workflow(child_id)
    assert (child.parent_id, child.data) == (parent_id, {"n": 2})


FINISHED = [WorkflowStatus.TERMINATED, WorkflowStatus.COMPLETE, WorkflowStatus.FAILED]


async def finished_parent(backend: Backend, status: WorkflowStatus) -> WorkflowRecord:
    """A workflow that ended with ``status`` (terminated, or by its own commit)."""
    store = backend.persistence
    parent = await create(backend)
    if status is WorkflowStatus.TERMINATED:
        await store.set_status(parent.id, "terminate", UNFINISHED, status)
    else:
        claim = await claim_only(backend, parent.id)
        await store.commit(commit_for(claim, status=status))
    return await store.get_workflow(parent.id)


async def stored_ids(backend: Backend) -> set[str]:
    listed = await backend.persistence.list_workflows(WorkflowQuery(limit=1000))
    return {r.id for r in listed}


async def assert_not_stored(backend: Backend, new: NewWorkflow, before: set[str]) -> None:
    """Nothing of ``new`` was written: no row, no pointers, its key still free."""
    store = backend.persistence
    assert await stored_ids(backend) == before
    with pytest.raises(NotFound):
        await store.get_workflow(new.id)
    with pytest.raises(NotFound):
        await store.get_pointers(new.id)
    assert new.idempotency_key is not None
    reuse = new_workflow(idempotency_key=new.idempotency_key, next_execution=None)
    _, created = await store.create_workflow(reuse)  # no parent: nothing to refuse
    assert created


@pytest.mark.parametrize("status", FINISHED, ids=lambda s: s.value)
async def test_a_child_of_a_finished_parent_is_refused_and_nothing_is_stored(
    backend: Backend, status: WorkflowStatus
) -> None:
    parent = await finished_parent(backend, status)
    before_parent = await snapshot(backend, parent.id)
    before = await stored_ids(backend)
    new = new_workflow(parent_id=parent.id, idempotency_key=new_id("key-"))

    with pytest.raises(InvalidStateTransition) as refused:
        await backend.persistence.create_workflow(new)

    assert (refused.value.workflow_id, refused.value.status) == (parent.id, status.value)
    assert "start a child of" in str(refused.value)
    assert await snapshot(backend, parent.id) == before_parent
    await assert_not_stored(backend, new, before)
    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []


async def test_a_child_of_a_missing_parent_is_refused_and_nothing_is_stored(
    backend: Backend,
) -> None:
    before = await stored_ids(backend)
    missing = new_id("wf-")
    new = new_workflow(parent_id=missing, idempotency_key=new_id("key-"))

    with pytest.raises(NotFound) as refused:
        await backend.persistence.create_workflow(new)

    assert refused.value.workflow_id == missing
    assert "parent" in str(refused.value)
    await assert_not_stored(backend, new, before)


async def test_a_child_of_a_suspended_parent_is_created(backend: Backend) -> None:
    store = backend.persistence
    parent = await create(backend, next_execution=None)
    await store.set_status(parent.id, "suspend", UNFINISHED, WorkflowStatus.SUSPENDED)

    child = await create(backend, parent_id=parent.id)

    assert (child.status, child.parent_id) == (WorkflowStatus.RUNNABLE, parent.id)
    assert (await claim_only(backend, child.id)).workflow_id == child.id
    # And terminating the suspended parent still reaches it.
    await store.set_status(parent.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)
    assert (await store.get_workflow(child.id)).status is WorkflowStatus.TERMINATED


@pytest.mark.parametrize("status", FINISHED, ids=lambda s: s.value)
async def test_a_repeated_start_after_the_parent_finished_returns_the_existing_child(
    backend: Backend, status: WorkflowStatus
) -> None:
    store = backend.persistence
    parent = await create(backend)
    parent_claim = await claim_only(backend, parent.id)
    key = new_id("key-")
    child, created = await store.create_workflow(
        new_workflow(parent_id=parent.id, idempotency_key=key, next_execution=None)
    )
    assert created
    if status is WorkflowStatus.TERMINATED:
        await store.set_status(parent.id, "terminate", UNFINISHED, status)
    else:
        await store.commit(commit_for(parent_claim, status=status))
    before = await stored_ids(backend)

    again, created = await store.create_workflow(
        new_workflow(parent_id=parent.id, idempotency_key=key)
    )

    assert not created
    assert again == await store.get_workflow(child.id)
    assert await stored_ids(backend) == before
    # The cascade reached it only if the parent was terminated.
    terminated = status is WorkflowStatus.TERMINATED
    assert again.status is (WorkflowStatus.TERMINATED if terminated else WorkflowStatus.RUNNABLE)


async def test_the_client_refuses_a_child_of_a_terminated_parent(backend: Backend) -> None:
    await backend.persistence.save_definition(
        DefinitionRecord(definition_id=DEFINITION, version=1, fingerprint="f")
    )
    client = WorkflowClient(backend, auto_migrate=False)
    parent_id = await client.start_workflow(DEFINITION, {"n": 1})
    await client.terminate_workflow(parent_id)

    with pytest.raises(InvalidStateTransition, match="start a child of"):
        await client.start_workflow(DEFINITION, {"n": 2}, parent_id=parent_id)
    with pytest.raises(NotFound):
        await client.start_workflow(DEFINITION, {"n": 2}, parent_id=new_id("wf-"))

    assert [w.id for w in await client.list_workflows(definition_id=DEFINITION)] == [parent_id]
