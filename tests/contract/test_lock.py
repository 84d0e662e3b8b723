"""Contract: named locks with leases and fencing tokens."""

from __future__ import annotations

import asyncio

import pytest

from wfe_core.errors import LeaseLost
from wfe_core.ports.backend import Backend

from .support import LONG_LEASE, PAST_SHORT_LEASE, SHORT_LEASE


async def test_one_of_many_concurrent_contenders_gets_the_lock(backend: Backend) -> None:
    results = await asyncio.gather(
        *(backend.lock.acquire("cleanup", f"host-{i}", LONG_LEASE) for i in range(8))
    )

    winners = [lease for lease in results if lease is not None]
    assert len(winners) == 1
    assert winners[0].name == "cleanup"
    assert winners[0].owner in {f"host-{i}" for i in range(8)}
    assert await backend.lock.acquire("cleanup", "host-late", LONG_LEASE) is None


async def test_release_frees_the_lock_and_the_token_grows(backend: Backend) -> None:
    lock = backend.lock
    first = await lock.acquire("cleanup", "host-a", LONG_LEASE)
    assert first is not None
    await lock.release(first)

    second = await lock.acquire("cleanup", "host-b", LONG_LEASE)

    assert second is not None
    assert second.token > first.token
    with pytest.raises(LeaseLost):
        await lock.renew(first, LONG_LEASE)
    await lock.release(first)  # stale: must not free host-b's lock
    assert await lock.acquire("cleanup", "host-c", LONG_LEASE) is None


async def test_an_expired_lock_can_be_taken_and_fences_the_old_holder(backend: Backend) -> None:
    lock = backend.lock
    old = await lock.acquire("cleanup", "host-a", SHORT_LEASE)
    assert old is not None
    await asyncio.sleep(PAST_SHORT_LEASE)

    new = await lock.acquire("cleanup", "host-b", LONG_LEASE)

    assert new is not None and new.token > old.token
    with pytest.raises(LeaseLost):
        await lock.renew(old, LONG_LEASE)
    await lock.release(old)
    assert await lock.acquire("cleanup", "host-c", LONG_LEASE) is None
    renewed = await lock.renew(new, LONG_LEASE)
    assert (renewed.owner, renewed.token) == ("host-b", new.token)


async def test_renew_keeps_the_lock_past_its_first_expiry(backend: Backend) -> None:
    lock = backend.lock
    lease = await lock.acquire("cleanup", "host-a", SHORT_LEASE)
    assert lease is not None

    renewed = await lock.renew(lease, LONG_LEASE)

    assert (renewed.name, renewed.owner, renewed.token) == ("cleanup", "host-a", lease.token)
    assert renewed.expires_at > lease.expires_at
    await asyncio.sleep(PAST_SHORT_LEASE)
    assert await lock.acquire("cleanup", "host-b", LONG_LEASE) is None
    await lock.release(renewed)
    assert await lock.acquire("cleanup", "host-b", LONG_LEASE) is not None


async def test_locks_with_different_names_are_independent(backend: Backend) -> None:
    a = await backend.lock.acquire("cleanup", "host-a", LONG_LEASE)
    b = await backend.lock.acquire("scheduler", "host-b", LONG_LEASE)

    assert a is not None and b is not None
    await backend.lock.release(a)
    assert await backend.lock.acquire("scheduler", "host-c", LONG_LEASE) is None
