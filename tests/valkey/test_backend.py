"""Wiring: ``with_valkey``, the ``valkey=`` option of PostgreSQL URLs, the builder's
``use_valkey``, and what a missing redis-py or a bad URL gives."""

from __future__ import annotations

import sys
from urllib.parse import quote

import pytest

from wfe import WorkflowHostBuilder
from wfe_core.errors import ProviderError
from wfe_core.ports.backend import Backend
from wfe_core.testing import memory_backend
from wfe_postgres import open_backend
from wfe_valkey import ValkeyBackend, with_valkey
from wfe_valkey.connection import connect
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.queue import ValkeyQueue
from wfe_valkey.url import parse_url


class ClosedCount:
    """Counts the calls of a spied-on ``close``/``aclose``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, method: str) -> None:
        self.calls = 0
        real = getattr(owner, method)

        async def spy(*args: object) -> None:
            self.calls += 1
            await real(*args)

        monkeypatch.setattr(owner, method, spy)


async def holder_of(valkey_url: str, name: str) -> bytes | None:
    """What Valkey stores for lock ``name`` under the URL's prefix."""
    client = connect(valkey_url)
    try:
        value = await client.get(f"{parse_url(valkey_url).prefix}:lock:{name}")
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        await client.aclose()


async def test_with_valkey_moves_the_lock_and_the_queue_and_closes_all(
    valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = memory_backend()
    backend = with_valkey(base, valkey_url)
    assert isinstance(backend, ValkeyBackend)
    assert isinstance(backend.lock, ValkeyLock)
    assert isinstance(backend.queue, ValkeyQueue)
    assert (backend.persistence, backend.search) == (base.persistence, base.search)
    base_closed = ClosedCount(monkeypatch, base, "close")
    client_closed = ClosedCount(monkeypatch, backend.client, "aclose")
    queue_closed = ClosedCount(monkeypatch, backend.queue, "close")

    lease = await backend.lock.acquire("job", "host-a", 30)
    assert lease is not None
    assert await holder_of(valkey_url, "job") is not None
    await backend.queue.wait_for_work(0.01)  # starts its wake-up subscription
    await backend.close()

    assert (base_closed.calls, client_closed.calls, queue_closed.calls) == (1, 1, 1)


async def test_a_valkey_queue_needs_a_store_that_keeps_the_leases(valkey_url: str) -> None:
    base = memory_backend()
    client = connect(valkey_url)
    base.queue = ValkeyQueue(client, "x", base.queue)  # type: ignore[arg-type]
    try:
        with pytest.raises(ValueError, match="keeps the leases itself"):
            with_valkey(base, valkey_url)
    finally:
        await client.aclose()


async def test_a_postgres_url_with_valkey_puts_the_lock_in_valkey(
    pg_url: str, valkey_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = open_backend(f"{pg_url}?valkey={quote(valkey_url, safe='')}")
    try:
        assert isinstance(backend, ValkeyBackend) and isinstance(backend.lock, ValkeyLock)
        await backend.persistence.migrate()
        lease = await backend.lock.acquire("job", "host-a", 30)
        assert lease is not None

        stored = await holder_of(valkey_url, "job")
        assert stored is not None and stored.endswith(b":host-a")
    finally:
        assert isinstance(backend, ValkeyBackend)
        client_closed = ClosedCount(monkeypatch, backend.client, "aclose")
        await backend.close()
    assert client_closed.calls == 1


async def test_the_valkey_prefix_option_names_the_key_namespace(
    pg_url: str, valkey_url: str
) -> None:
    prefix = parse_url(valkey_url).prefix
    server = valkey_url.partition("?")[0]
    backend = open_backend(f"{pg_url}?valkey={server}&valkey_prefix={prefix}")
    try:
        assert await backend.lock.acquire("job", "host-a", 30) is not None
        assert await holder_of(valkey_url, "job") is not None
    finally:
        await backend.close()


def test_a_bad_valkey_option_is_refused_before_anything_opens() -> None:
    with pytest.raises(ValueError, match="scheme 'http'"):
        open_backend("postgresql://nobody@127.0.0.1:1/none?valkey=http://cache")
    with pytest.raises(ValueError, match="valkey_prefix needs valkey="):
        open_backend("postgresql://nobody@127.0.0.1:1/none?valkey_prefix=x")


async def test_without_redis_py_the_valkey_option_asks_for_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in [name for name in sys.modules if name.partition(".")[0] == "redis"]:
        monkeypatch.delitem(sys.modules, module)
    for module in ("wfe_valkey.connection", "wfe_valkey.lock", "wfe_valkey.errors"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, "redis", None)
    base = memory_backend()

    with pytest.raises(ProviderError, match=r"pip install 'wfe\[valkey\]'"):
        with_valkey(base, "redis://127.0.0.1:6379/0")
    await base.close()


async def test_the_builder_puts_the_lock_in_valkey(valkey_url: str) -> None:
    host = WorkflowHostBuilder().use_url("memory://builder-valkey").use_valkey(valkey_url).build()
    try:
        assert isinstance(host.backend, Backend)
        assert isinstance(host.backend.lock, ValkeyLock)
    finally:
        await host.close()


def test_the_builder_refuses_a_bad_valkey_url_at_once() -> None:
    with pytest.raises(ValueError, match="port"):
        WorkflowHostBuilder().use_valkey("redis://cache:port/0")
