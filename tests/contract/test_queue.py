"""Contract: claiming due workflows under leases, renewal, release, wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from wfe_core.errors import LeaseLost
from wfe_core.models import Claim, StartLease, WorkflowStatus
from wfe_core.ports.backend import Backend
from wfe_core.ports.queue import LeaseStore

from .support import (
    CLOCK_SLACK_MS,
    ELIGIBLE,
    LONG_LEASE,
    PAST_SHORT_LEASE,
    SHORT_LEASE,
    claim_only,
    commit_for,
    create,
    new_workflow,
)

# Long enough that a waiter still waiting when the test checks is not a slow machine.
NEVER = 60.0


async def test_claim_takes_only_due_runnable_unleased_workflows(backend: Backend) -> None:
    store = backend.persistence
    due = await create(backend)
    await create(backend, next_execution=store.now_ms() + 60_000)
    await create(backend, next_execution=None)
    suspended = await create(backend)
    await store.set_status(
        suspended.id, "suspend", frozenset({WorkflowStatus.RUNNABLE}), WorkflowStatus.SUSPENDED
    )
    before = store.now_ms()

    claim = await claim_only(backend, due.id, "host-a", lease=LONG_LEASE)

    assert (claim.owner, claim.recoveries) == ("host-a", 0)
    assert before - CLOCK_SLACK_MS <= claim.db_now <= store.now_ms() + CLOCK_SLACK_MS
    assert claim.expires_at - claim.db_now == pytest.approx(LONG_LEASE * 1000, abs=1000)
    record = await store.get_workflow(due.id)
    assert (record.lease_owner, record.lease_token) == ("host-a", claim.token)
    assert await backend.queue.claim("host-b", 10, LONG_LEASE, ELIGIBLE) == []


async def test_claim_takes_only_eligible_definitions_and_versions(backend: Backend) -> None:
    wanted = await create(backend, definition_id="a", version=2)
    await create(backend, definition_id="a", version=1)
    await create(backend, definition_id="b", version=2)
    queue = backend.queue

    assert await queue.claim("host-a", 10, LONG_LEASE, []) == []
    assert await queue.claim("host-a", 10, LONG_LEASE, [("c", 1)]) == []
    claims = await queue.claim("host-a", 10, LONG_LEASE, [("a", 2), ("c", 1)])
    assert [c.workflow_id for c in claims] == [wanted.id]


async def test_claim_respects_the_limit_earliest_due_first(backend: Backend) -> None:
    now = backend.persistence.now_ms()
    offsets = [-3_000, -1_000, -5_000, -2_000, -4_000]
    records = [await create(backend, next_execution=now + offset) for offset in offsets]
    by_due = [r.id for _, r in sorted(zip(offsets, records, strict=True), key=lambda x: x[0])]

    first = await backend.queue.claim("host-a", 2, LONG_LEASE, ELIGIBLE)
    second = await backend.queue.claim("host-b", 2, LONG_LEASE, ELIGIBLE)
    rest = await backend.queue.claim("host-c", 10, LONG_LEASE, ELIGIBLE)

    assert [c.workflow_id for c in first] == by_due[:2]
    assert [c.workflow_id for c in second] == by_due[2:4]
    assert [c.workflow_id for c in rest] == by_due[4:]
    assert await backend.queue.claim("host-a", 0, LONG_LEASE, ELIGIBLE) == []


async def test_concurrent_claimers_never_claim_one_workflow_twice(backend: Backend) -> None:
    ids = {(await create(backend)).id for _ in range(12)}

    rounds = await asyncio.gather(
        *(backend.queue.claim(f"host-{i}", 2, LONG_LEASE, ELIGIBLE) for i in range(10))
    )
    claimed = [c.workflow_id for claims in rounds for c in claims]
    leftover = await backend.queue.claim("host-last", 20, LONG_LEASE, ELIGIBLE)

    assert len(claimed) == len(set(claimed))
    assert sorted(claimed + [c.workflow_id for c in leftover]) == sorted(ids)
    for claims in rounds:
        for claim in claims:
            record = await backend.persistence.get_workflow(claim.workflow_id)
            assert (record.lease_owner, record.lease_token) == (claim.owner, claim.token)


async def test_a_workflow_started_with_a_lease_is_held_by_its_starter(backend: Backend) -> None:
    store = backend.persistence
    before = store.now_ms()

    record = await create(backend, lease=StartLease(owner="host-a", seconds=LONG_LEASE))

    claim = Claim.of_created(record)
    assert claim is not None
    assert (claim.owner, claim.token, claim.recoveries) == ("host-a", 1, 0)
    assert before - CLOCK_SLACK_MS <= claim.db_now <= store.now_ms() + CLOCK_SLACK_MS
    assert claim.expires_at - record.create_time == pytest.approx(LONG_LEASE * 1000, abs=1000)
    assert await store.get_workflow(record.id) == record
    assert await backend.queue.claim("host-b", 10, LONG_LEASE, ELIGIBLE) == []
    assert [c.workflow_id for c in await backend.queue.renew([claim], LONG_LEASE)] == [record.id]
    assert await store.commit(commit_for(claim, data='{"n": 1}')) is WorkflowStatus.RUNNABLE
    assert Claim.of_created(await create(backend)) is None


async def test_a_start_lease_its_owner_let_expire_is_recovered(backend: Backend) -> None:
    store = backend.persistence
    record = await create(backend, lease=StartLease(owner="host-a", seconds=SHORT_LEASE))
    old = Claim.of_created(record)
    assert old is not None

    await asyncio.sleep(PAST_SHORT_LEASE)
    new = await claim_only(backend, record.id, "host-b")

    assert (new.token, new.recoveries) == (2, 1)  # its starter died holding it
    with pytest.raises(LeaseLost):
        await store.commit(commit_for(old, data="{}"))
    assert await store.commit(commit_for(new, data="{}")) is WorkflowStatus.RUNNABLE


async def test_a_start_lease_is_ignored_when_the_idempotency_key_is_taken(
    backend: Backend,
) -> None:
    first = await create(backend, idempotency_key="order-7")

    again, created = await backend.persistence.create_workflow(
        new_workflow(idempotency_key="order-7", lease=StartLease(owner="host-a", seconds=30))
    )

    assert (again.id, created, again.lease_owner, again.lease_token) == (first.id, False, None, 0)
    await claim_only(backend, first.id, "host-b")


async def test_starts_made_together_keep_each_their_own_lease(backend: Backend) -> None:
    leases = [
        StartLease(owner=f"host-{i % 3}", seconds=LONG_LEASE) if i % 2 else None for i in range(20)
    ]

    made = await asyncio.gather(
        *(
            backend.persistence.create_workflow(new_workflow(pointers=[], lease=lease))
            for lease in leases
        )
    )

    for (record, created), lease in zip(made, leases, strict=True):
        assert created
        assert record.lease_owner == (None if lease is None else lease.owner)
        assert record.lease_token == (0 if lease is None else 1)
    claimed = await backend.queue.claim("host-x", 50, LONG_LEASE, ELIGIBLE)
    unleased = {r.id for (r, _), lease in zip(made, leases, strict=True) if lease is None}
    assert {c.workflow_id for c in claimed} == unleased


async def test_an_expired_lease_is_recovered_by_another_host(backend: Backend) -> None:
    store = backend.persistence
    record = await create(backend)
    old = await claim_only(backend, record.id, "host-a", lease=SHORT_LEASE)
    assert await backend.queue.claim("host-b", 10, LONG_LEASE, ELIGIBLE) == []

    await asyncio.sleep(PAST_SHORT_LEASE)
    new = await claim_only(backend, record.id, "host-b")

    assert new.token == old.token + 1
    assert new.recoveries == old.recoveries + 1
    assert (await store.get_workflow(record.id)).recoveries == new.recoveries
    with pytest.raises(LeaseLost):
        await store.commit(commit_for(old, data="{}"))
    assert await backend.queue.renew([old], LONG_LEASE) == []
    await backend.queue.release(old)  # stale: ignored
    assert await backend.queue.claim("host-c", 10, LONG_LEASE, ELIGIBLE) == []
    assert await store.commit(commit_for(new, data="{}")) is WorkflowStatus.RUNNABLE


async def test_a_commit_starts_the_crash_loop_count_over(backend: Backend) -> None:
    record = await create(backend)
    await claim_only(backend, record.id, "host-a", lease=SHORT_LEASE)
    await asyncio.sleep(PAST_SHORT_LEASE)
    recovered = await claim_only(backend, record.id, "host-b", lease=SHORT_LEASE)
    assert recovered.recoveries == 1
    await backend.persistence.commit(commit_for(recovered, next_execution=0))
    assert (await backend.persistence.get_workflow(record.id)).recoveries == 0
    await asyncio.sleep(PAST_SHORT_LEASE)
    assert (await claim_only(backend, record.id, "host-c")).recoveries == 1


async def test_renew_extends_only_leases_still_held(backend: Backend) -> None:
    kept_record = await create(backend)
    kept = await claim_only(backend, kept_record.id, "host-a", lease=SHORT_LEASE)
    lost_record = await create(backend)
    lost = await claim_only(backend, lost_record.id, "host-a", lease=SHORT_LEASE)
    await backend.queue.release(lost)
    await claim_only(backend, lost_record.id, "host-b")

    renewed = await backend.queue.renew([kept, lost], LONG_LEASE)

    assert [(c.workflow_id, c.owner, c.token) for c in renewed] == [
        (kept.workflow_id, "host-a", kept.token)
    ]
    assert renewed[0].expires_at > kept.expires_at
    await asyncio.sleep(PAST_SHORT_LEASE)
    assert await backend.queue.claim("host-c", 10, LONG_LEASE, ELIGIBLE) == []
    stored = await backend.persistence.get_workflow(kept.workflow_id)
    assert (stored.lease_owner, stored.lease_token, stored.recoveries) == ("host-a", kept.token, 0)


async def test_release_makes_the_workflow_due_now_for_another_owner(backend: Backend) -> None:
    store = backend.persistence
    record = await create(backend)
    claim = await claim_only(backend, record.id, "host-a")
    await store.commit(commit_for(claim, next_execution=store.now_ms() + 60_000))

    await backend.queue.release(claim)

    stored = await store.get_workflow(record.id)
    assert stored.lease_owner is None
    assert stored.next_execution is not None and stored.next_execution <= store.now_ms()
    again = await claim_only(backend, record.id, "host-b")
    assert again.token > claim.token
    assert again.recoveries == 0
    with pytest.raises(LeaseLost):
        await store.commit(commit_for(claim, data="{}"))


async def test_wait_for_work_returns_on_wake(backend: Backend) -> None:
    queue = backend.queue
    waiter = asyncio.create_task(queue.wait_for_work(NEVER))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    queue.wake()

    await asyncio.wait_for(waiter, timeout=10)


async def test_a_wake_before_the_wait_is_not_lost_and_is_consumed(backend: Backend) -> None:
    queue = backend.queue
    await queue.wait_for_work(0.01)  # consume wake-ups from set-up, if any
    queue.wake()
    await asyncio.wait_for(queue.wait_for_work(NEVER), timeout=10)

    waiter = asyncio.create_task(queue.wait_for_work(NEVER))
    await asyncio.sleep(0.05)
    try:
        assert not waiter.done(), "a consumed wake-up woke the next wait too"
    finally:
        queue.wake()
        await asyncio.wait_for(waiter, timeout=10)


async def test_wait_for_work_returns_after_its_timeout(backend: Backend) -> None:
    await backend.queue.wait_for_work(0.01)  # consume wake-ups from set-up, if any
    await asyncio.wait_for(backend.queue.wait_for_work(0.05), timeout=10)


async def test_renew_refuses_an_older_claim_of_the_same_owner_and_takes_many_owners(
    backend: Backend,
) -> None:
    first = await create(backend)
    old = await claim_only(backend, first.id, "host-a")
    await backend.queue.release(old)
    newer = await claim_only(backend, first.id, "host-a")
    other = await create(backend)
    theirs = await claim_only(backend, other.id, "host-b")

    renewed = await backend.queue.renew([old, theirs], LONG_LEASE)
    assert [(c.workflow_id, c.owner, c.token) for c in renewed] == [
        (other.id, "host-b", theirs.token)
    ]
    again = await backend.queue.renew([newer], LONG_LEASE)
    assert [(c.workflow_id, c.token) for c in again] == [(first.id, newer.token)]


async def test_an_enqueued_start_is_claimed_once_by_the_hosts_of_its_definition(
    backend: Backend,
) -> None:
    records = [await create(backend) for _ in range(6)]
    other = await create(backend, definition_id="other")
    for record in [*records, other]:
        await backend.queue.enqueue(record)

    rounds = await asyncio.gather(
        *(backend.queue.claim(f"host-{i}", 2, LONG_LEASE, ELIGIBLE) for i in range(5))
    )
    claimed = [c.workflow_id for claims in rounds for c in claims]

    assert sorted(claimed) == sorted(r.id for r in records)
    assert await backend.queue.claim("host-late", 10, LONG_LEASE, ELIGIBLE) == []
    assert [
        c.workflow_id for c in await backend.queue.claim("host-x", 10, LONG_LEASE, [("other", 1)])
    ] == [other.id]


def _lease_store(backend: Backend) -> LeaseStore:
    queue = backend.queue
    if not isinstance(queue, LeaseStore):
        pytest.skip(f"{type(queue).__name__} keeps no leases itself (it is layered on a store's)")
    return queue


async def test_claim_ids_leases_only_the_listed_due_free_eligible_workflows(
    backend: Backend,
) -> None:
    store, leases = backend.persistence, _lease_store(backend)
    due, unlisted = await create(backend), await create(backend)
    later = await create(backend, next_execution=store.now_ms() + 60_000)
    other = await create(backend, definition_id="other")
    held = await create(backend)
    holder = (await leases.claim_ids("host-b", [held.id], LONG_LEASE, ELIGIBLE))[0]
    listed = [due.id, later.id, other.id, held.id, "wf-unknown", due.id]

    claims = await leases.claim_ids("host-a", listed, LONG_LEASE, ELIGIBLE)

    assert [(c.workflow_id, c.owner, c.recoveries) for c in claims] == [(due.id, "host-a", 0)]
    assert claims[0].expires_at - claims[0].db_now == pytest.approx(LONG_LEASE * 1000, abs=1000)
    stored = await store.get_workflow(due.id)
    assert (stored.lease_owner, stored.lease_token) == ("host-a", claims[0].token)
    assert (await store.get_workflow(held.id)).lease_token == holder.token
    assert (await store.get_workflow(unlisted.id)).lease_owner is None
    assert await leases.claim_ids("host-a", [], LONG_LEASE, ELIGIBLE) == []
    assert await leases.claim_ids("host-a", [unlisted.id], LONG_LEASE, []) == []


async def test_claim_ids_recovers_an_expired_lease_and_never_leases_twice(
    backend: Backend,
) -> None:
    leases = _lease_store(backend)
    record = await create(backend)
    old = (await leases.claim_ids("host-a", [record.id], SHORT_LEASE, ELIGIBLE))[0]
    await asyncio.sleep(PAST_SHORT_LEASE)

    rounds = await asyncio.gather(
        *(leases.claim_ids(f"host-{i}", [record.id], LONG_LEASE, ELIGIBLE) for i in range(6))
    )

    [new] = [claim for claims in rounds for claim in claims]
    assert (new.token, new.recoveries) == (old.token + 1, 1)
    with pytest.raises(LeaseLost):
        await backend.persistence.commit(commit_for(old, data="{}"))
