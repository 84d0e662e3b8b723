"""Named locks in Valkey/Redis: ``SET PX`` leases, token-checked renew and release, and
fencing tokens that grow across holders.

Keys (``prefix`` from the URL, ``wfe`` by default)::

    {prefix}:lock:{name}    the holder, as "{fence}:{secret}:{owner}", expiring after the ttl
    {prefix}:fence:{name}   the last fencing token given out; never expires

(The counter is not ``{prefix}:lock:{name}:fence``: a lock named ``x:fence`` would then
share its key with the counter of the lock ``x``.)

Each operation is one Lua script, run atomically by the server:

- **acquire** reads the holder and, if there is none (or it is the same owner, who
  gets the lock again with a new token, as the SQL lock does), takes the next token
  with ``INCR`` and writes the holder with ``SET ... PX ttl``, in the same script, so a
  token is given out exactly when the lock is taken. Read and write in one script is
  ``SET NX PX`` plus "or already ours".
- **renew** (``PEXPIRE``) and **release** (``DEL``) act only if the stored holder is
  exactly the caller's "{fence}:{secret}:{owner}": a stale holder can neither extend nor
  free the lock of the one that took it over.

``secret`` is random per :class:`ValkeyLock`, so a lease is renewed and released through
the provider that took it (as a host does with its own leases); another process that
happens to use the same owner name cannot touch it. Expiry times are read from the
server's clock (``TIME`` in the script), the clock that expires the key.

The tokens only grow if the counter survives: the server must keep it (an
append-only file for restarts; ``noeviction`` or a ``volatile-*`` eviction policy, which
never evicts a key without a ttl). Workflow leases are fenced in the database, not here:
this lock only keeps singleton background jobs from running twice at once.

Every script is safe to run twice, as the retries need: a second acquire by the same
owner takes the lock again with a newer token (the first one was never handed out), a
second renew extends again, a second release finds nothing of ours.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from wfe_core.errors import LeaseLost
from wfe_core.models import Lease
from wfe_core.ports.lock import LockProvider
from wfe_core.transient import TransientRetry
from wfe_valkey.retry import VALKEY_RETRY, run
from wfe_valkey.url import DEFAULT_PREFIX

_NOW_MS = "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

ACQUIRE = (
    """
local held = redis.call('GET', KEYS[1])
if held and string.match(held, '^%d+:%x+:(.*)$') ~= ARGV[1] then
    return false
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence .. ':' .. ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[3])
"""
    + _NOW_MS
    + "return {fence, now + tonumber(ARGV[3])}\n"
)
"""KEYS: lock, counter. ARGV: owner, secret, ttl ms. Returns {token, expires_at ms}, or
nil when another owner holds the lock."""

RENEW = (
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
    + _NOW_MS
    + "return now + tonumber(ARGV[2])\n"
)
"""KEYS: lock. ARGV: holder value, ttl ms. Returns the new expires_at ms, or nil when
the lock is no longer held with that value."""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
"""KEYS: lock. ARGV: holder value. Deletes the lock only if it is held with that value."""


def _ms(seconds: float) -> int:
    # PX and PEXPIRE refuse 0: the shortest lease is one millisecond.
    return max(int(seconds * 1000), 1)


class ValkeyLock(LockProvider):
    """Named leases with fencing tokens, stored in Valkey/Redis.

    Args:
        client: from :func:`wfe_valkey.connection.connect`; not closed by this class.
        prefix: the key namespace (``{prefix}:lock:...``).
        retry: the budget for transient failures (a restarting server).
    """

    def __init__(
        self, client: Redis, prefix: str = DEFAULT_PREFIX, retry: TransientRetry = VALKEY_RETRY
    ) -> None:
        self._prefix = prefix
        self._retry = retry
        self._secret = secrets.token_hex(8)
        # Registered once; each call sends EVALSHA and, when the server no longer has
        # the script (after a restart or SCRIPT FLUSH), loads it again and re-sends.
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)

    def key(self, name: str) -> str:
        """The key holding lock ``name``'s holder."""
        return f"{self._prefix}:lock:{name}"

    def fence_key(self, name: str) -> str:
        """The key counting lock ``name``'s fencing tokens."""
        return f"{self._prefix}:fence:{name}"

    def _holder(self, lease: Lease) -> str:
        return f"{lease.token}:{self._secret}:{lease.owner}"

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> Lease | None:
        """Take the lock if it is free or expired (or already ``owner``'s, which gets a new
        token); ``None`` if someone else holds it.

        Raises:
            ProviderError: Valkey failed, and retrying within the budget did not help.
        """
        ttl = _ms(ttl_seconds)

        async def take() -> list[int] | None:
            keys = [self.key(name), self.fence_key(name)]
            result: list[int] | None = await self._acquire(keys, [owner, self._secret, ttl])
            return result

        taken = await run(f"acquire lock {name!r}", take, self._retry)
        if taken is None:
            return None
        token, expires_at = taken
        return Lease(name=name, owner=owner, token=int(token), expires_at=int(expires_at))

    async def renew(self, lease: Lease, ttl_seconds: float) -> Lease:
        """Extend a held lease; raise ``LeaseLost`` if it is no longer ours.

        Retries stop being started after a quarter of the ttl and the whole call ends
        within the ttl: a later renewal would come after the lease had run out anyway.

        Raises:
            LeaseLost: the lock expired or another holder has it.
            ProviderError: Valkey failed, and retrying within the budget did not help.
        """
        ttl = _ms(ttl_seconds)

        async def extend() -> int | None:
            expires: int | None = await self._renew(
                [self.key(lease.name)], [self._holder(lease), ttl]
            )
            return expires

        expires_at = await run(
            f"renew lock {lease.name!r}",
            extend,
            self._retry,
            retry_for=ttl_seconds / 4,
            deadline=max(ttl_seconds, 0.001),
        )
        if expires_at is None:
            raise LeaseLost(lease.name, lease.token)
        return Lease(lease.name, lease.owner, lease.token, int(expires_at))

    async def release(self, lease: Lease) -> None:
        """Free the lock if we still hold it (checked by token); otherwise do nothing.

        Raises:
            ProviderError: Valkey failed, and retrying within the budget did not help
                (the lock then frees itself when its ttl runs out).
        """

        async def free() -> None:
            await self._release([self.key(lease.name)], [self._holder(lease)])

        await run(f"release lock {lease.name!r}", free, self._retry)
