"""A backend whose queue and lock live in Valkey/Redis, its persistence where it was.

The database stays the source of truth and the fence: workflow leases, step commits
and their tokens are checked there. Valkey takes the coordination that many hosts
hammer (handing out starts, wake-ups, singleton locks) off it.

``import wfe_valkey.backend`` does not import redis-py: a database URL carrying a
``valkey=`` option is refused with an installation hint when the extra is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wfe_core.errors import ProviderError
from wfe_core.ports.backend import Backend
from wfe_core.ports.queue import LeaseStore
from wfe_valkey.url import ValkeyUrl, parse_url, split_database_url

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(kw_only=True)
class ValkeyBackend(Backend):
    """``base``'s providers with some replaced by Valkey ones on ``client``.

    ``close()`` stops the queue's wake-ups, closes ``base`` (its database) and then
    the Valkey client.
    """

    base: Backend
    client: Redis

    async def close(self) -> None:
        from wfe_valkey.queue import ValkeyQueue  # redis-py is there: the client is

        try:
            if isinstance(self.queue, ValkeyQueue):
                await self.queue.close()
            await self.base.close()
        finally:
            await self.client.aclose()


def with_valkey(backend: Backend, url: str | ValkeyUrl) -> Backend:
    """``backend`` with its lock and its queue in Valkey/Redis at ``url``.

    The queue carries starts through Valkey streams and leases through ``backend``'s
    own queue, which must keep the leases itself (a
    :class:`~wfe_core.ports.LeaseStore`, as the SQL stores' queues do): the tokens
    every commit is fenced with stay in the database. Persistence and search stay
    ``backend``'s. Nothing connects until first use. The returned backend owns
    ``backend``: closing it closes both.

    Args:
        backend: the database's backend.
        url: ``redis://host:port/db?prefix=wfe`` and the other forms of
            :func:`wfe_valkey.url.parse_url`.

    Raises:
        ValueError: the URL is malformed, or ``backend``'s queue keeps no leases.
        ProviderError: redis-py is not installed (the ``valkey`` extra).
    """
    where = parse_url(url) if isinstance(url, str) else url
    if not isinstance(backend.queue, LeaseStore):
        raise ValueError(
            f"a Valkey queue needs a store that keeps the leases itself; "
            f"{type(backend.queue).__name__} does not (it has no claim_ids)"
        )
    try:
        from wfe_valkey.connection import connect
        from wfe_valkey.lock import ValkeyLock
        from wfe_valkey.queue import ValkeyQueue
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "redis":
            raise
        raise ProviderError(
            f"Valkey at {where.display()} needs redis-py: pip install 'wfe[valkey]' ({exc})"
        ) from exc
    client = connect(where)
    return ValkeyBackend(
        persistence=backend.persistence,
        queue=ValkeyQueue(client, where.prefix, backend.queue),
        lock=ValkeyLock(client, where.prefix),
        search=backend.search,
        base=backend,
        client=client,
    )


def open_with_valkey_option(url: str, open_database: Callable[[str], Backend]) -> Backend:
    """Open a database URL that may carry ``valkey=`` (and ``valkey_prefix=``): the
    options are checked and taken out before ``open_database`` sees the URL, and the
    backend it opens gets its queue and lock in Valkey when they were given.

    Raises:
        ValueError: a Valkey option is malformed (before anything is opened).
        ProviderError: ``valkey=`` is given but redis-py is not installed.
    """
    url, valkey = split_database_url(url)
    backend = open_database(url)
    return backend if valkey is None else with_valkey(backend, valkey)
