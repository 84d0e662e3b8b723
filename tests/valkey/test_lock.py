"""The Valkey lock against a real server process that the tests kill, restart and
pause (RELIABILITY R18; the provider contract itself runs in ``tests/contract`` on the
``postgres+valkey`` backend).

No timing assertions: waits are "until the lease must have run out" (longer than PX by
the server's own clock) or polls with generous deadlines.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis import exceptions as redis_errors

from wfe_core.errors import LeaseLost, ProviderError
from wfe_core.models import Lease
from wfe_core.transient import TransientRetry
from wfe_valkey.connection import ConnectionPolicy, connect
from wfe_valkey.lock import ACQUIRE, RELEASE, RENEW, ValkeyLock

from .servers import ServerProcess

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[2]
LONG = 30.0
RUNS = 20
"""R18 asks for 20 runs of each case that is cheap to repeat."""

MakeLock = Callable[..., ValkeyLock]


@pytest.fixture
async def make_lock() -> AsyncIterator[MakeLock]:
    """``make_lock(url, retry=None, policy=None)``: a lock on a client of its own (as
    each host has); every client is closed after the test."""
    clients = []

    def make(
        url: str, retry: TransientRetry | None = None, policy: ConnectionPolicy | None = None
    ) -> ValkeyLock:
        client = connect(url, policy)
        clients.append(client)
        return ValkeyLock(client) if retry is None else ValkeyLock(client, retry=retry)

    yield make
    for client in clients:
        await client.aclose()


async def wait_for_lock(lock: ValkeyLock, name: str, owner: str, timeout: float = 30.0) -> Lease:
    """Poll ``acquire`` until it succeeds (a deadline, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while True:
            lease = await lock.acquire(name, owner, LONG)
            if lease is not None:
                return lease
            await asyncio.sleep(0.05)


def spawn_holder(url: str, name: str, owner: str, ttl: float) -> subprocess.Popen[bytes]:
    """A process that takes the lock, prints its token and holds it until killed."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.valkey.lock_holder", url, name, owner, str(ttl)],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )


async def test_exactly_one_of_eight_contenders_wins(
    valkey_server: ServerProcess, make_lock: MakeLock
) -> None:
    hosts = [make_lock(valkey_server.url()) for _ in range(8)]
    tokens: list[int] = []
    for run in range(RUNS):
        name = f"job-{run % 2}"
        results = await asyncio.gather(
            *(lock.acquire(name, f"host-{i}", LONG) for i, lock in enumerate(hosts))
        )

        winners = [(i, lease) for i, lease in enumerate(results) if lease is not None]
        assert len(winners) == 1, results
        i, lease = winners[0]
        assert lease.owner == f"host-{i}"
        tokens.append(lease.token)
        await hosts[i].release(lease)
    for name in ("job-0", "job-1"):
        assert tokens[name == "job-1" :: 2] == sorted(set(tokens[name == "job-1" :: 2]))


async def test_a_stale_holder_can_neither_renew_nor_release(
    valkey_server: ServerProcess, make_lock: MakeLock
) -> None:
    a, b = make_lock(valkey_server.url()), make_lock(valkey_server.url())
    for _ in range(RUNS):
        old = await a.acquire("job", "host-a", 0.05)
        assert old is not None
        await asyncio.sleep(0.15)  # past PX: the server has expired the key

        new = await b.acquire("job", "host-b", LONG)

        assert new is not None and new.token > old.token
        with pytest.raises(LeaseLost):
            await a.renew(old, LONG)
        await a.release(old)
        assert await a.acquire("job", "host-a", LONG) is None  # still host-b's
        await b.release(new)


async def test_the_same_owner_gets_the_lock_again_with_a_new_token(
    valkey_server: ServerProcess, make_lock: MakeLock
) -> None:
    lock = make_lock(valkey_server.url())
    first = await lock.acquire("job", "host-a", LONG)
    assert first is not None

    again = await lock.acquire("job", "host-a", LONG)

    assert again is not None and again.token > first.token
    with pytest.raises(LeaseLost):
        await lock.renew(first, LONG)
    await lock.release(first)  # the older lease of the same owner frees nothing
    assert await make_lock(valkey_server.url()).acquire("job", "host-b", LONG) is None
    assert (await lock.renew(again, LONG)).token == again.token


async def test_the_lock_of_a_killed_holder_is_free_after_px(
    valkey_server: ServerProcess, make_lock: MakeLock
) -> None:
    holder = spawn_holder(valkey_server.url(), "job", "dead", 4.0)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 30)
        held = int(line)
        holder.kill()
        holder.wait(timeout=10)
        lock = make_lock(valkey_server.url())
        assert await lock.acquire("job", "alive", LONG) is None  # PX has not run out yet

        lease = await wait_for_lock(lock, "job", "alive")

        assert lease.token > held
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


async def test_a_server_paused_past_px_fences_the_old_holder(
    valkey_server: ServerProcess, make_lock: MakeLock
) -> None:
    px = 1.0
    a, b = make_lock(valkey_server.url()), make_lock(valkey_server.url())
    old = await a.acquire("job", "host-a", px)
    assert old is not None

    valkey_server.pause()
    try:
        # Both are sent while the server is stopped and answered once it continues, by
        # which time its clock has passed the lease's expiry.
        renewing = asyncio.ensure_future(a.renew(old, LONG))
        taking = asyncio.ensure_future(b.acquire("job", "host-b", LONG))
        await asyncio.sleep(2 * px)
    finally:
        valkey_server.resume()

    with pytest.raises(LeaseLost):
        await renewing
    new = await taking
    assert new is not None and new.token > old.token
    await a.release(old)
    assert await a.acquire("job", "host-a", LONG) is None
    assert (await b.renew(new, LONG)).owner == "host-b"


@pytest.mark.parametrize("crash", [True, False], ids=["kill9", "sigterm"])
async def test_a_restarted_server_keeps_the_fence_and_the_client_reconnects(
    valkey_server: ServerProcess, make_lock: MakeLock, crash: bool
) -> None:
    lock = make_lock(valkey_server.url())
    tokens = []
    for _ in range(3):
        lease = await lock.acquire("job", "host-a", LONG)
        assert lease is not None
        tokens.append(lease.token)
        await lock.release(lease)

    if crash:
        valkey_server.kill()
    else:
        valkey_server.stop()
    valkey_server.start()
    assert await scripts_loaded(valkey_server) == [False, False, False]

    # The same lock and client: the broken connection is replaced by itself, and the
    # restarted server, which lost its script cache (NOSCRIPT), is sent the script again.
    after = await lock.acquire("job", "host-a", LONG)
    assert after is not None and after.token > max(tokens)
    assert (await lock.renew(after, LONG)).token == after.token
    await lock.release(after)
    assert await lock.acquire("job", "host-b", LONG) is not None
    assert await scripts_loaded(valkey_server) == [True, True, True]


async def scripts_loaded(server: ServerProcess) -> list[bool]:
    """Whether the server has the lock's scripts in its cache (asked on a new client)."""
    client = connect(server.url())
    try:
        shas = [hashlib.sha1(script.encode()).hexdigest() for script in (ACQUIRE, RENEW, RELEASE)]
        return list(await client.script_exists(*shas))
    finally:
        await client.aclose()


async def test_scripts_are_loaded_again_after_script_flush(
    valkey_server: ServerProcess, make_lock: MakeLock
) -> None:
    client = connect(valkey_server.url())
    try:
        lock = ValkeyLock(client)
        first = await lock.acquire("job", "host-a", LONG)
        assert first is not None
        await client.script_flush()

        renewed = await lock.renew(first, LONG)
        await lock.release(renewed)
        again = await lock.acquire("job", "host-b", LONG)

        assert again is not None and again.token > first.token
    finally:
        await client.aclose()


async def test_a_server_down_past_the_retry_budget_is_a_provider_error(
    valkey_server: ServerProcess, make_lock: MakeLock
) -> None:
    lock = make_lock(
        valkey_server.url(),
        retry=TransientRetry(attempts=3, first_wait=0.01, max_wait=0.05, max_elapsed=5.0),
        policy=ConnectionPolicy(connect_timeout=2.0, retries=1, backoff_base=0.01),
    )
    lease = await lock.acquire("job", "host-a", LONG)
    assert lease is not None
    valkey_server.kill()

    for call in (
        lock.acquire("job", "host-a", LONG),
        lock.renew(lease, LONG),
        lock.release(lease),
    ):
        with pytest.raises(ProviderError) as caught:
            await call
        assert caught.value.transient
        assert isinstance(caught.value.__cause__, redis_errors.ConnectionError)
        assert "lock 'job'" in str(caught.value)
