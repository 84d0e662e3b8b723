"""Contract: publishing events, finding them for subscriptions, recording deliveries."""

from __future__ import annotations

import asyncio
import json

import pytest

from wfe_core.errors import ProviderError
from wfe_core.models import Claim, EventSubscription, WorkflowStatus
from wfe_core.ports.backend import Backend

from .support import (
    CLOCK_SLACK_MS,
    ELIGIBLE,
    claim_only,
    commit_for,
    create,
    snapshot,
    subscription,
)


async def waiting_workflow(
    backend: Backend, *, key: str = "order-1", as_of: int = 0, release: bool = True
) -> tuple[Claim, EventSubscription]:
    """A workflow subscribed to ("paid", key) with nothing due; its lease is given up
    unless ``release`` is false (then the claim stays good for further commits)."""
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    sub = subscription(record.id, key=key, as_of=as_of)
    await backend.persistence.commit(
        commit_for(claim, new_subscriptions=[sub], next_execution=None, release=release)
    )
    return claim, sub


async def test_publish_stores_the_event_with_store_time_and_parsed_data(
    backend: Backend,
) -> None:
    store = backend.persistence
    before = store.now_ms()
    event = await store.publish_event("paid", "order-1", json.dumps({"amount": 12.5, "x": [1]}))

    assert (event.name, event.key, event.data) == ("paid", "order-1", {"amount": 12.5, "x": [1]})
    assert before - CLOCK_SLACK_MS <= event.event_time <= store.now_ms() + CLOCK_SLACK_MS
    claim, sub = await waiting_workflow(backend)
    found = await store.find_events(claim.workflow_id, [sub])
    assert found == {sub.id: event}


async def test_an_event_published_before_the_subscription_is_found(backend: Backend) -> None:
    store = backend.persistence
    event = await store.publish_event("paid", "order-1", json.dumps("early"))
    claim, sub = await waiting_workflow(backend, as_of=event.event_time)

    assert (await store.find_events(claim.workflow_id, [sub]))[sub.id].data == "early"


async def test_find_events_filters_by_name_key_and_as_of(backend: Backend) -> None:
    store = backend.persistence
    event = await store.publish_event("paid", "order-1", "{}")
    await store.publish_event("paid", "order-2", "{}")
    await store.publish_event("shipped", "order-1", "{}")
    claim, _ = await waiting_workflow(backend)
    wid = claim.workflow_id
    at = subscription(wid, as_of=event.event_time)
    after = subscription(wid, as_of=event.event_time + 1)
    other_key = subscription(wid, key="order-3")
    other_name = subscription(wid, name="refunded")

    found = await store.find_events(wid, [at, after, other_key, other_name])

    assert list(found) == [at.id]
    assert found[at.id].id == event.id


async def test_events_are_delivered_earliest_first_and_once_per_workflow(
    backend: Backend,
) -> None:
    store = backend.persistence
    first = await store.publish_event("paid", "order-1", json.dumps(1))
    await asyncio.sleep(0.005)  # distinct event times, so "earliest" is one event
    second = await store.publish_event("paid", "order-1", json.dumps(2))
    claim, sub = await waiting_workflow(backend, release=False)
    other, other_sub = await waiting_workflow(backend)
    wid = claim.workflow_id

    assert (await store.find_events(wid, [sub]))[sub.id].id == first.id
    await store.commit(commit_for(claim, delivered_events=[first.id]))
    assert (await store.find_events(wid, [sub]))[sub.id].id == second.id
    await store.commit(commit_for(claim, delivered_events=[second.id]))
    assert await store.find_events(wid, [sub]) == {}

    # Deliveries are per workflow: the other subscriber still gets both.
    assert (await store.find_events(other.workflow_id, [other_sub]))[other_sub.id].id == first.id


async def test_a_second_delivery_of_an_event_is_rejected_and_writes_nothing(
    backend: Backend,
) -> None:
    store = backend.persistence
    event = await store.publish_event("paid", "order-1", "{}")
    claim, _ = await waiting_workflow(backend, release=False)
    await store.commit(commit_for(claim, delivered_events=[event.id]))
    before = await snapshot(backend, claim.workflow_id)

    with pytest.raises(ProviderError):
        await store.commit(
            commit_for(claim, data=json.dumps({"n": 9}), delivered_events=[event.id])
        )

    assert await snapshot(backend, claim.workflow_id) == before


async def test_publish_wakes_only_matching_runnable_subscribers(backend: Backend) -> None:
    store = backend.persistence
    matching, _ = await waiting_workflow(backend, key="order-1")
    other_key, _ = await waiting_workflow(backend, key="order-2")
    future, _ = await waiting_workflow(backend, as_of=store.now_ms() + 60_000)
    suspended, _ = await waiting_workflow(backend, key="order-1")
    await store.set_status(
        suspended.workflow_id,
        "suspend",
        frozenset({WorkflowStatus.RUNNABLE}),
        WorkflowStatus.SUSPENDED,
    )
    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []

    await store.publish_event("paid", "order-1", "{}")

    claims = await backend.queue.claim("host-b", 10, 30, ELIGIBLE)
    assert [c.workflow_id for c in claims] == [matching.workflow_id]
    for not_woken in (other_key, future):
        assert (await store.get_workflow(not_woken.workflow_id)).next_execution is None


async def test_two_events_for_two_subscriptions_of_one_workflow(backend: Backend) -> None:
    store = backend.persistence
    claim, paid = await waiting_workflow(backend, release=False)
    shipped = subscription(claim.workflow_id, name="shipped")
    await store.commit(commit_for(claim, new_subscriptions=[shipped]))
    e_paid = await store.publish_event("paid", "order-1", json.dumps("p"))
    e_shipped = await store.publish_event("shipped", "order-1", json.dumps("s"))

    found = await store.find_events(claim.workflow_id, [paid, shipped])

    assert {k: v.id for k, v in found.items()} == {paid.id: e_paid.id, shipped.id: e_shipped.id}


async def test_an_event_published_during_a_step_is_not_buried_by_its_commit(
    backend: Backend,
) -> None:
    # The executor looked for events, then one was published, then it committed
    # "nothing to do until an event arrives": the workflow must still be due.
    store = backend.persistence
    claim, sub = await waiting_workflow(backend, release=False)
    assert await store.find_events(claim.workflow_id, [sub]) == {}
    event = await store.publish_event("paid", "order-1", "{}")

    await store.commit(commit_for(claim, next_execution=None, release=True))

    again = await claim_only(backend, claim.workflow_id, "host-b")
    assert (await store.find_events(again.workflow_id, [sub]))[sub.id].id == event.id


async def test_an_event_published_before_its_subscription_is_committed_wakes_it(
    backend: Backend,
) -> None:
    # Published after the executor's last look but before the commit adding the
    # subscription, so publish found no subscriber to wake.
    store = backend.persistence
    record = await create(backend)
    claim = await claim_only(backend, record.id)
    sub = subscription(record.id, as_of=record.create_time)
    assert await store.find_events(record.id, [sub]) == {}
    event = await store.publish_event("paid", "order-1", "{}")

    await store.commit(
        commit_for(claim, new_subscriptions=[sub], next_execution=None, release=True)
    )

    again = await claim_only(backend, record.id, "host-b")
    assert (await store.find_events(again.workflow_id, [sub]))[sub.id].id == event.id


async def test_a_delivered_event_does_not_keep_the_workflow_due(backend: Backend) -> None:
    store = backend.persistence
    claim, sub = await waiting_workflow(backend, release=False)
    event = await store.publish_event("paid", "order-1", "{}")

    await store.commit(
        commit_for(claim, delivered_events=[event.id], next_execution=None, release=True)
    )

    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []
    assert await store.find_events(claim.workflow_id, [sub]) == {}
