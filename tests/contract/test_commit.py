"""Contract: load_state and commit under a lease, fencing, status changes, purge."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from wfe_core.errors import InvalidStateTransition, LeaseLost, NotFound, WorkflowError
from wfe_core.models import (
    ExecutionError,
    ExecutionPointer,
    PointerStatus,
    StepCommit,
    WorkflowStatus,
)
from wfe_core.ports.backend import Backend

from .support import (
    CLOCK_SLACK_MS,
    ELIGIBLE,
    claim_only,
    commit_for,
    create,
    new_id,
    new_workflow,
    pointer,
    snapshot,
    subscription,
)

RUNNABLE = frozenset({WorkflowStatus.RUNNABLE})
SUSPENDED = frozenset({WorkflowStatus.SUSPENDED})
UNFINISHED = frozenset({WorkflowStatus.RUNNABLE, WorkflowStatus.SUSPENDED})
FINISHED = frozenset({WorkflowStatus.COMPLETE, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED})


def full_pointer(now: int) -> ExecutionPointer:
    """A pointer with every field away from its default."""
    return ExecutionPointer(
        id=new_id("p-full-"),
        step_id=7,
        step_name="charge card",
        status=PointerStatus.WAITING,
        attempt=3,
        sleep_until=now + 5_000,
        persistence_data={"cursor": [1, 2.5, {"k": None}], "text": "ünïcödé"},
        start_time=now - 20,
        end_time=now - 10,
        event_name="paid",
        event_key="order-9",
        event_as_of=now - 100,
        event_data={"amount": 12.5, "ok": True},
        event_published=True,
        children=["c-1", "c-2"],
        context_item={"item": 3},
        predecessor_id="p-0",
        scope=["inner", "outer"],
        outcome=["approved", 1],
        error="boom",
    )


async def test_load_state_and_commit_round_trip_every_pointer_field(backend: Backend) -> None:
    store = backend.persistence
    now = store.now_ms()
    first = pointer(new_id("z-"), 0)
    record = await create(backend, pointers=[first])
    claim = await claim_only(backend, record.id)

    state = await store.load_state(claim)
    assert state.record.id == record.id
    assert (state.record.lease_owner, state.record.lease_token) == ("host-a", claim.token)
    assert state.pointers == [first]
    assert state.subscriptions == []

    added = full_pointer(now)
    done = first.model_copy(update={"status": PointerStatus.COMPLETE, "end_time": now})
    sub = subscription(record.id, as_of=now)
    status = await store.commit(
        commit_for(
            claim,
            data=json.dumps({"n": 1}),
            error="last error",
            next_execution=now + 1_000,
            new_pointers=[added],
            updated_pointers=[done],
            new_subscriptions=[sub],
            errors=[
                ExecutionError(
                    workflow_id=record.id,
                    pointer_id=first.id,
                    step_name=first.step_name,
                    attempt=1,
                    error_time=now,
                    message="boom",
                )
            ],
        )
    )

    assert status is WorkflowStatus.RUNNABLE
    assert await store.get_pointers(record.id) == [done, added]
    state = await store.load_state(claim)
    assert state.pointers == [done, added]
    assert state.subscriptions == [sub]
    assert json.loads(state.record.data) == {"n": 1}
    assert (state.record.error, state.record.next_execution) == ("last error", now + 1_000)
    assert state.record.complete_time is None


async def test_commit_removes_subscriptions(backend: Backend) -> None:
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    keep, drop = subscription(record.id, key="a"), subscription(record.id, key="b")
    await backend.persistence.commit(commit_for(claim, new_subscriptions=[keep, drop]))
    await backend.persistence.commit(commit_for(claim, removed_subscriptions=[drop.id]))

    assert (await backend.persistence.load_state(claim)).subscriptions == [keep]


async def test_finishing_commit_sets_complete_time_and_frees_the_workflow(
    backend: Backend,
) -> None:
    store = backend.persistence
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    status = await store.commit(
        commit_for(
            claim,
            status=WorkflowStatus.FAILED,
            error="step x failed",
            next_execution=store.now_ms(),
            release=True,
        )
    )
    now = store.now_ms()

    assert status is WorkflowStatus.FAILED
    stored = await store.get_workflow(record.id)
    assert (stored.status, stored.error, stored.lease_owner) == (
        WorkflowStatus.FAILED,
        "step x failed",
        None,
    )
    assert stored.complete_time is not None
    assert now - CLOCK_SLACK_MS <= stored.complete_time <= now
    assert stored.next_execution is None
    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []
    with pytest.raises(LeaseLost):
        await store.commit(commit_for(claim, data="{}"))


async def test_stale_or_foreign_lease_commits_nothing(backend: Backend) -> None:
    store = backend.persistence
    record = await create(backend)
    old = await claim_only(backend, record.id, "host-a")
    event = await store.publish_event("paid", "order-1", "{}")
    await backend.queue.release(old)
    current = await claim_only(backend, record.id, "host-b")
    assert current.token > old.token
    before = await snapshot(backend, record.id)
    sub = subscription(record.id, as_of=0)
    pointers = await store.get_pointers(record.id)

    for owner, token in [("host-a", old.token), ("host-b", old.token), ("host-a", current.token)]:
        stale = commit_for(current, data=json.dumps({"n": 99}), status=WorkflowStatus.COMPLETE)
        stale.owner, stale.token = owner, token
        stale.new_pointers = [pointer()]
        stale.updated_pointers = [pointers[0].model_copy(update={"status": PointerStatus.FAILED})]
        stale.new_subscriptions = [sub]
        stale.delivered_events = [event.id]
        with pytest.raises(LeaseLost) as caught:
            await store.commit(stale)
        assert caught.value.workflow_id == record.id
        assert await snapshot(backend, record.id) == before
        assert list(await store.find_events(record.id, [sub])) == [sub.id]

    with pytest.raises(LeaseLost):
        await store.load_state(old)
    assert await store.commit(commit_for(current, data="{}")) is WorkflowStatus.RUNNABLE


async def test_commit_with_release_clears_the_lease(backend: Backend) -> None:
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    await backend.persistence.commit(commit_for(claim, next_execution=0, release=True))

    stored = await backend.persistence.get_workflow(record.id)
    assert (stored.lease_owner, stored.lease_expires_at) == (None, None)
    with pytest.raises(LeaseLost):
        await backend.persistence.commit(commit_for(claim, data="{}"))
    again = await claim_only(backend, record.id, "host-b")
    assert again.token > claim.token
    assert again.recoveries == 0


async def test_commit_is_allowed_while_suspended_and_reports_it(backend: Backend) -> None:
    store = backend.persistence
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    await store.set_status(record.id, "suspend", RUNNABLE, WorkflowStatus.SUSPENDED)

    # RUNNABLE in a commit means "carry on": it must not undo the user's suspension.
    status = await store.commit(
        commit_for(claim, data=json.dumps({"n": 5}), status=WorkflowStatus.RUNNABLE, release=True)
    )

    assert status is WorkflowStatus.SUSPENDED
    stored = await store.get_workflow(record.id)
    assert (stored.status, json.loads(stored.data)) == (WorkflowStatus.SUSPENDED, {"n": 5})
    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []


async def test_terminate_fences_off_the_owner(backend: Backend) -> None:
    store = backend.persistence
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    before = store.now_ms()

    terminated = await store.set_status(
        record.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED
    )

    assert terminated.status is WorkflowStatus.TERMINATED
    assert terminated.complete_time is not None
    assert before - CLOCK_SLACK_MS <= terminated.complete_time <= store.now_ms()
    assert (terminated.lease_owner, terminated.next_execution) == (None, None)
    with pytest.raises(LeaseLost):
        await store.commit(commit_for(claim, data="{}", status=WorkflowStatus.COMPLETE))
    assert await backend.queue.renew([claim], 30) == []
    assert (await store.get_workflow(record.id)).status is WorkflowStatus.TERMINATED


async def test_suspend_and_resume_change_what_is_due(backend: Backend) -> None:
    store = backend.persistence
    record = await create(backend, next_execution=None)

    suspended = await store.set_status(record.id, "suspend", RUNNABLE, WorkflowStatus.SUSPENDED)
    assert suspended.status is WorkflowStatus.SUSPENDED
    assert await backend.queue.claim("host-a", 10, 30, ELIGIBLE) == []

    resumed = await store.set_status(record.id, "resume", SUSPENDED, WorkflowStatus.RUNNABLE)
    assert resumed.status is WorkflowStatus.RUNNABLE
    assert resumed.complete_time is None
    await claim_only(backend, record.id)


async def test_illegal_transitions_raise_and_change_nothing(backend: Backend) -> None:
    store = backend.persistence
    running = await create(backend)
    done = await create(backend)
    await store.set_status(done.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)
    before = [await snapshot(backend, running.id), await snapshot(backend, done.id)]

    with pytest.raises(InvalidStateTransition) as caught:
        await store.set_status(running.id, "resume", SUSPENDED, WorkflowStatus.RUNNABLE)
    assert (caught.value.workflow_id, caught.value.action) == (running.id, "resume")
    assert caught.value.status == "RUNNABLE"
    assert "resume" in str(caught.value) and "RUNNABLE" in str(caught.value)
    for action in ("suspend", "terminate"):
        with pytest.raises(InvalidStateTransition) as caught:
            await store.set_status(done.id, action, UNFINISHED, WorkflowStatus.SUSPENDED)
        assert caught.value.status == "TERMINATED"

    assert [await snapshot(backend, running.id), await snapshot(backend, done.id)] == before


async def test_unserializable_pointer_is_rejected_and_writes_nothing(backend: Backend) -> None:
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    before = await snapshot(backend, record.id)

    with pytest.raises(WorkflowError):
        await backend.persistence.commit(
            commit_for(claim, data="{}", new_pointers=[pointer(persistence_data=object())])
        )
    assert await snapshot(backend, record.id) == before


async def test_purge_deletes_old_finished_workflows_with_their_rows(backend: Backend) -> None:
    store = backend.persistence
    old = await create(backend, idempotency_key="old-key")
    await store.set_status(old.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)
    failed = await create(backend)
    claim = await claim_only(backend, failed.id)
    await store.commit(commit_for(claim, status=WorkflowStatus.FAILED, release=True))
    unfinished = await create(backend)
    await asyncio.sleep(0.02)  # so "recent" completes strictly later than the others
    recent = await create(backend, next_execution=None)
    completed = await store.set_status(recent.id, "complete", UNFINISHED, WorkflowStatus.COMPLETE)
    assert completed.complete_time is not None
    cutoff = completed.complete_time - 1

    assert await store.purge(cutoff, frozenset({WorkflowStatus.TERMINATED})) == 1
    with pytest.raises(NotFound):
        await store.get_workflow(old.id)
    with pytest.raises(NotFound):
        await store.get_pointers(old.id)
    for kept in (failed.id, unfinished.id, recent.id):
        await store.get_workflow(kept)

    assert await store.purge(cutoff, FINISHED) == 1
    with pytest.raises(NotFound):
        await store.get_workflow(failed.id)
    assert await store.purge(cutoff, FINISHED) == 0
    await store.get_workflow(unfinished.id)
    await store.get_workflow(recent.id)
    # The purged workflow's idempotency key went with it.
    _, created = await store.create_workflow(new_workflow(idempotency_key="old-key"))
    assert created


async def test_purge_keeps_events_an_unfinished_workflow_still_waits_for(
    backend: Backend,
) -> None:
    store = backend.persistence
    finished = await create(backend, next_execution=None)
    waiting = await create(backend)
    claim = await claim_only(backend, waiting.id)
    sub = subscription(waiting.id, as_of=0)
    await store.commit(commit_for(claim, new_subscriptions=[sub], release=True))
    event = await store.publish_event("paid", "order-1", json.dumps({"amount": 3}))
    await store.set_status(finished.id, "terminate", UNFINISHED, WorkflowStatus.TERMINATED)

    assert await store.purge(store.now_ms() + 60_000, FINISHED) == 1
    found = await store.find_events(waiting.id, [sub])
    assert found[sub.id].id == event.id


async def test_purge_deletes_events_no_unfinished_workflow_can_receive(backend: Backend) -> None:
    store = backend.persistence
    unreachable = await store.publish_event("paid", "order-1", json.dumps("old"))
    await asyncio.sleep(0.02)  # the workflow starts strictly after that event
    record = await create(backend)
    reachable = await store.publish_event("paid", "order-1", json.dumps("new"))

    assert await store.purge(store.now_ms() + 60_000, FINISHED) == 0

    claim = await claim_only(backend, record.id)
    sub = subscription(record.id, as_of=unreachable.event_time)
    await store.commit(commit_for(claim, new_subscriptions=[sub]))
    found = await store.find_events(record.id, [sub])
    assert found[sub.id].id == reachable.id


async def test_load_states_reads_a_batch_of_claims_and_leaves_stale_ones_out(
    backend: Backend,
) -> None:
    store = backend.persistence
    records = [await create(backend, pointers=[pointer(new_id("p-"), 0)]) for _ in range(3)]
    claims = await backend.queue.claim("host-a", 10, 60, ELIGIBLE)
    assert {c.workflow_id for c in claims} == {r.id for r in records}
    sub = subscription(claims[0].workflow_id)
    await store.commit(commit_for(claims[0], new_subscriptions=[sub]))
    stale = dataclasses.replace(claims[1], token=claims[1].token + 5)

    states = await store.load_states([claims[0], stale, claims[2]])

    assert set(states) == {claims[0].workflow_id, claims[2].workflow_id}
    for claim in (claims[0], claims[2]):
        assert states[claim.workflow_id] == await store.load_state(claim)
    assert states[claims[0].workflow_id].subscriptions == [sub]
    assert await store.load_states([]) == {}


async def test_concurrent_commits_land_each_and_a_refused_one_fails_alone(
    backend: Backend,
) -> None:
    store = backend.persistence
    records = [await create(backend) for _ in range(12)]
    claims = {c.workflow_id: c for c in await backend.queue.claim("host-a", 20, 60, ELIGIBLE)}
    assert set(claims) == {r.id for r in records}
    bad_id = records[5].id
    commits = [
        commit_for(
            claims[r.id],
            data=json.dumps({"i": i}),
            # Updating a pointer that was never stored is refused by the store.
            updated_pointers=[pointer(new_id("ghost-"), 0)] if r.id == bad_id else [],
            has_parent=False,
            has_subscriptions=False,
        )
        for i, r in enumerate(records)
    ]
    outcomes = await asyncio.gather(*(store.commit(c) for c in commits), return_exceptions=True)

    for i, (record, outcome) in enumerate(zip(records, outcomes, strict=True)):
        stored = await store.get_workflow(record.id)
        if record.id == bad_id:
            assert isinstance(outcome, WorkflowError)
            assert json.loads(stored.data) == json.loads(record.data)  # nothing written
        else:
            assert outcome is WorkflowStatus.RUNNABLE
            assert json.loads(stored.data) == {"i": i}


async def test_commits_made_together_each_write_what_a_lone_commit_writes(
    backend: Backend,
) -> None:
    """Group commits of every plain kind (finishing, failing, releasing, keeping a
    suspension, fenced off) leave what the same commit leaves made alone."""
    store = backend.persistence
    kinds = ["complete", "fail", "release", "suspended", "fenced", "unchanged"]

    async def setup() -> list[tuple[str, StepCommit]]:
        made = []
        for kind in kinds:
            first = pointer(new_id("p-"), 0)
            record = await create(backend, pointers=[first])
            claim = await claim_only(backend, record.id)
            if kind == "suspended":
                await store.set_status(record.id, "suspend", RUNNABLE, WorkflowStatus.SUSPENDED)
            done = first.model_copy(update={"status": PointerStatus.COMPLETE})
            fields: dict[str, Any] = {
                "data": json.dumps({"kind": kind}),
                "updated_pointers": [done],
                "new_pointers": [pointer(new_id("p-"), 1), pointer(new_id("p-"), 2)],
                "next_execution": 0,
                # What the executor says of a workflow with no parent and no
                # subscriptions: the commits a busy host makes most.
                "has_parent": False,
                "has_subscriptions": False,
            }
            if kind == "complete":
                fields.update(status=WorkflowStatus.COMPLETE, complete_time=123_456)
            elif kind == "fail":
                fields.update(status=WorkflowStatus.FAILED, error="step 0 failed")
            elif kind == "release":
                fields.update(release=True, next_execution=store.now_ms() + 60_000)
            elif kind == "fenced":
                claim = dataclasses.replace(claim, token=claim.token + 1)
            elif kind == "unchanged":
                fields.update(data=None, updated_pointers=[], new_pointers=[], next_execution=None)
            made.append((record.id, commit_for(claim, **fields)))
        return made

    def outcome_of(result: object) -> object:
        return type(result).__name__ if isinstance(result, BaseException) else result

    async def stored(workflow_id: str) -> tuple[object, ...]:
        record = await store.get_workflow(workflow_id)
        kept = await store.get_pointers(workflow_id)
        due = None if record.next_execution is None else record.next_execution > store.now_ms()
        return (
            record.status,
            json.loads(record.data),
            record.error,
            due,
            record.lease_owner,
            record.complete_time == 123_456 if record.status is WorkflowStatus.COMPLETE else None,
            record.complete_time is not None,
            [(p.step_id, p.status) for p in kept],
        )

    alone = await setup()
    alone_outcomes = [outcome_of(await _result(store.commit(c))) for _, c in alone]
    together = await setup()
    together_outcomes = [
        outcome_of(o)
        for o in await asyncio.gather(
            *(store.commit(c) for _, c in together), return_exceptions=True
        )
    ]

    assert together_outcomes == alone_outcomes
    assert alone_outcomes[kinds.index("fenced")] == "LeaseLost"
    assert alone_outcomes[kinds.index("suspended")] is WorkflowStatus.SUSPENDED
    for (a, _), (t, _) in zip(alone, together, strict=True):
        assert await stored(t) == await stored(a)


async def _result(call: Any) -> object:
    try:
        return await call
    except (Exception, LeaseLost) as exc:  # as gather(return_exceptions=True) returns them
        return exc
