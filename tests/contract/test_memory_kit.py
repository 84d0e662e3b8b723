"""The test kit itself: the public names, the injected clock, copies, the search index.

Memory only: these check what only an in-memory store can promise (an exact clock).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

import wfe_core.testing
from wfe_core.clock import SystemClock
from wfe_core.models import NewWorkflow, WorkflowStatus
from wfe_core.testing import (
    FakeClock,
    MemoryLock,
    MemoryPersistence,
    MemoryQueue,
    MemorySearchIndex,
    MemoryState,
    memory_backend,
)

from .support import ELIGIBLE, claim_only, commit_for, create, new_workflow, pointer, subscription


def test_public_names_are_pinned() -> None:
    assert sorted(wfe_core.testing.__all__) == [
        "FakeClock",
        "MemoryLock",
        "MemoryPersistence",
        "MemoryQueue",
        "MemorySearchIndex",
        "MemoryState",
        "memory_backend",
    ]


def test_memory_backend_shares_one_store_and_defaults_to_the_system_clock() -> None:
    backend = memory_backend()
    assert isinstance(backend.persistence, MemoryPersistence)
    assert isinstance(backend.queue, MemoryQueue)
    assert isinstance(backend.lock, MemoryLock)
    assert isinstance(backend.search, MemorySearchIndex)
    assert backend.persistence.state is backend.queue.state is backend.lock.state
    assert isinstance(backend.persistence.state.clock, SystemClock)
    assert backend.queue.supports_notify is False


def test_a_provider_takes_a_state_or_a_clock_not_both() -> None:
    clock = FakeClock()
    assert MemoryQueue(clock=clock).state.clock is clock
    with pytest.raises(ValueError, match="not both"):
        MemoryLock(MemoryState(), clock=clock)


def test_fake_clock_moves_forward_only() -> None:
    clock = FakeClock(start_ms=1_000)
    clock.advance(1.5)
    clock.advance(timedelta(minutes=1))
    assert clock.now_ms() == 1_000 + 1_500 + 60_000
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_every_stored_time_comes_from_the_injected_clock() -> None:
    clock = FakeClock()
    backend = memory_backend(clock)
    store = backend.persistence
    t0 = clock.now_ms()
    assert store.now_ms() == t0

    record = await create(backend)
    assert record.create_time == t0
    clock.advance(1)
    claim = await claim_only(backend, record.id, lease=30)
    assert (claim.db_now, claim.expires_at) == (t0 + 1_000, t0 + 31_000)
    clock.advance(1)
    event = await store.publish_event("paid", "order-1", "{}")
    assert event.event_time == t0 + 2_000
    clock.advance(1)
    await store.commit(commit_for(claim, status=WorkflowStatus.COMPLETE))
    assert (await store.get_workflow(record.id)).complete_time == t0 + 3_000
    lease = await backend.lock.acquire("cleanup", "host-a", 10)
    assert lease is not None and lease.expires_at == t0 + 13_000


async def test_leases_expire_when_the_fake_clock_passes_them() -> None:
    clock = FakeClock()
    backend = memory_backend(clock)
    record = await create(backend)
    old = await claim_only(backend, record.id, "host-a", lease=30)
    assert await backend.lock.acquire("x", "host-a", 30) is not None

    clock.advance(29.999)
    assert await backend.queue.claim("host-b", 10, 30, ELIGIBLE) == []
    assert await backend.lock.acquire("x", "host-b", 30) is None
    clock.advance(0.001)

    new = await claim_only(backend, record.id, "host-b")
    assert (new.token, new.recoveries) == (old.token + 1, 1)
    assert await backend.lock.acquire("x", "host-b", 30) is not None


async def test_timers_fire_when_the_fake_clock_reaches_them() -> None:
    clock = FakeClock()
    backend = memory_backend(clock)
    record = await create(backend, next_execution=clock.now_ms() + 5_000)
    assert await backend.queue.claim("host-a", 10, 30, ELIGIBLE) == []
    clock.advance(5)
    await claim_only(backend, record.id)


async def test_advancing_the_fake_clock_wakes_waiting_hosts() -> None:
    clock = FakeClock()
    backend = memory_backend(clock)
    waiter = asyncio.create_task(backend.queue.wait_for_work(60))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    clock.advance(1)
    await asyncio.wait_for(waiter, timeout=10)


def test_a_store_survives_being_used_from_several_event_loops() -> None:
    backend = memory_backend()
    for _ in range(2):
        backend.queue.wake()
        asyncio.run(asyncio.wait_for(backend.queue.wait_for_work(60), timeout=10))


async def test_inputs_are_copied_into_the_store() -> None:
    backend = memory_backend()
    first = pointer(persistence_data={"k": [1]})
    new = new_workflow(pointers=[first])
    await backend.persistence.create_workflow(new)
    first.persistence_data["k"].append(2)
    first.step_name = "changed"
    assert (await backend.persistence.get_pointers(new.id)) == [
        pointer(first.id, persistence_data={"k": [1]})
    ]

    claim = await claim_only(backend, new.id)
    sub = subscription(new.id)
    await backend.persistence.commit(commit_for(claim, new_subscriptions=[sub]))
    sub.event_key = "changed"
    assert (await backend.persistence.load_state(claim)).subscriptions[0].event_key == "order-1"


async def test_pointer_values_are_stored_as_json_like_sql() -> None:
    backend = memory_backend()
    new = NewWorkflow(
        id="w",
        definition_id="d",
        version=1,
        data=json.dumps({}),
        pointers=[pointer("p", persistence_data=(1, 2), outcome={"t": (3,)})],
    )
    await backend.persistence.create_workflow(new)
    stored = (await backend.persistence.get_pointers("w"))[0]
    assert (stored.persistence_data, stored.outcome) == ([1, 2], {"t": [3]})


async def test_search_index_matches_reference_definition_and_data() -> None:
    index = MemorySearchIndex()
    backend = memory_backend()
    a = await create(backend, reference="Order-42", data={"customer": "Ada"})
    b = await create(backend, definition_id="Billing", data={"customer": "Bob"})
    for record in (a, b):
        await index.index_workflow(record)

    assert await index.search("order-4") == [a.id]
    assert await index.search("billing") == [b.id]
    assert await index.search("customer") == [a.id, b.id]
    assert await index.search("customer", limit=1) == [a.id]
    assert await index.search("nobody") == []
    await index.index_workflow(a.model_copy(update={"reference": "renamed"}))
    assert await index.search("order-4") == []
