"""``python -m tests.valkey.lock_holder URL NAME OWNER TTL``: take a Valkey lock, print
its token (or ``REFUSED``), then hold it without ever renewing until killed: a host
that dies holding a lock (RELIABILITY R18 c)."""

from __future__ import annotations

import asyncio
import sys

from wfe_valkey.connection import connect
from wfe_valkey.lock import ValkeyLock
from wfe_valkey.url import parse_url


async def hold(url: str, name: str, owner: str, ttl: float) -> None:
    client = connect(url)
    lease = await ValkeyLock(client, parse_url(url).prefix).acquire(name, owner, ttl)
    print("REFUSED" if lease is None else lease.token, flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    url, name, owner, ttl = sys.argv[1:5]
    asyncio.run(hold(url, name, owner, float(ttl)))
