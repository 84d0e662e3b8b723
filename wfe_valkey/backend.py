"""A backend whose lock lives in Valkey/Redis, its persistence where it was.

The database stays the source of truth and the fence: workflow leases, step commits
and their tokens are checked there. Valkey takes the coordination that many hosts
hammer (singleton locks, and the queue once :mod:`wfe_valkey.queue` exists) off it.

``import wfe_valkey.backend`` does not import redis-py: a database URL carrying a
``valkey=`` option is refused with an installation hint when the extra is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wfe_core.errors import ProviderError
from wfe_core.ports.backend import Backend
from wfe_valkey.url import ValkeyUrl, parse_url

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(kw_only=True)
class ValkeyBackend(Backend):
    """``base``'s providers with some replaced by Valkey ones on ``client``.

    ``close()`` closes ``base`` (its database) and then the Valkey client.
    """

    base: Backend
    client: Redis

    async def close(self) -> None:
        try:
            await self.base.close()
        finally:
            await self.client.aclose()


def with_valkey(backend: Backend, url: str | ValkeyUrl) -> Backend:
    """``backend`` with its lock in Valkey/Redis at ``url``.

    Persistence and search stay ``backend``'s. Nothing connects until first use. The
    returned backend owns ``backend``: closing it closes both.

    Args:
        backend: the database's backend.
        url: ``redis://host:port/db?prefix=wfe`` and the other forms of
            :func:`wfe_valkey.url.parse_url`.

    Raises:
        ValueError: the URL is malformed.
        ProviderError: redis-py is not installed (the ``valkey`` extra).
    """
    where = parse_url(url) if isinstance(url, str) else url
    try:
        from wfe_valkey.connection import connect
        from wfe_valkey.lock import ValkeyLock
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] != "redis":
            raise
        raise ProviderError(
            f"Valkey at {where.display()} needs redis-py: pip install 'wfe[valkey]' ({exc})"
        ) from exc
    client = connect(where)
    return ValkeyBackend(
        persistence=backend.persistence,
        queue=backend.queue,  # the Valkey queue (wfe_valkey.queue) goes here
        lock=ValkeyLock(client, where.prefix),
        search=backend.search,
        base=backend,
        client=client,
    )
