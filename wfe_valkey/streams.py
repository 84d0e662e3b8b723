"""The ready streams: ids of workflows to run, one Valkey stream per (definition,
version), read by the hosts through one consumer group.

Only ids travel here; the workflow, its lease and its fencing token stay in the store.
An entry is a hint that a workflow is due: the host that reads it leases the workflow
in the store, then acknowledges the entry (and deletes it, so streams stay short).
What makes it safe to lose a hint is the store's poll, which finds every due workflow
by itself; what makes hints survive a host's death is the consumer group: an entry read
but never acknowledged (the reader died before it leased the workflow) stays pending,
and another host reclaims it once it has been idle for ``reclaim_after_ms``. Persistence
across a Valkey restart is the server's (``appendonly yes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

GROUP = "hosts"
"""The consumer group every host reads through (one per stream)."""

MAX_LENGTH = 1_000_000
"""A stream is trimmed (approximately) past this many entries: a cap on what a
cluster with no host serving a definition can pile up. A trimmed entry is a lost hint,
which the store's poll makes up for."""

# KEYS: the streams; ARGV: group, consumer, count, min idle ms. Reclaims entries whose
# reader died before acknowledging them, then reads new ones, up to count in all.
# The group is made on first use (from id 0: entries added before it are read too).
_READ = """
local out = {}
local left = tonumber(ARGV[3])
for _, key in ipairs(KEYS) do
  if left <= 0 then break end
  pcall(redis.call, 'XGROUP', 'CREATE', key, ARGV[1], '0', 'MKSTREAM')
  local reclaimed = redis.call('XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[4], '0-0',
                               'COUNT', left)
  for _, entry in ipairs(reclaimed[2]) do
    if entry[2] then
      table.insert(out, {key, entry[1], entry[2][2]})
      left = left - 1
    end
  end
  if left > 0 then
    local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left,
                            'STREAMS', key, '>')
    if read then
      for _, entry in ipairs(read[1][2]) do
        table.insert(out, {key, entry[1], entry[2][2]})
        left = left - 1
      end
    end
  end
end
return out
"""

# KEYS: the streams; ARGV: group, idle ms. Deletes the group's consumers that hold no
# entry and have not read for idle ms: hosts that are gone (a live one that reads again
# is re-created by its read). Returns how many went.
_FORGET = """
local gone = 0
for _, key in ipairs(KEYS) do
  local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', key, ARGV[1])
  if ok then
    for _, c in ipairs(consumers) do
      local info = {}
      for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
      if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= tonumber(ARGV[2]) then
        redis.call('XGROUP', 'DELCONSUMER', key, ARGV[1], info['name'])
        gone = gone + 1
      end
    end
  end
end
return gone
"""

# KEYS: the stream, the wake-up channel; ARGV: the workflow id, the stream's cap.
_ADD = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'w', ARGV[1])
redis.call('PUBLISH', KEYS[2], KEYS[1])
return id
"""


@dataclass(frozen=True)
class Entry:
    """One hint read from a ready stream."""

    stream: str
    entry_id: str
    workflow_id: str


class ReadyStreams:
    """Adds, reads (with reclaim) and acknowledges the ids of due workflows.

    Args:
        client: the Valkey client (its retry settings survive reconnects).
        prefix: the key namespace; streams are ``{prefix}:ready:{definition}:{version}``
            and the wake-up channel ``{prefix}:wake``.
        reclaim_after_ms: how long an entry read but not acknowledged stays with its
            reader before another host takes it (its reader is presumed dead). Hosts
            acknowledge within one claim, milliseconds after reading.
    """

    def __init__(self, client: Redis, prefix: str, *, reclaim_after_ms: int = 10_000) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = f"{prefix}:wake"
        self.reclaim_after_ms = reclaim_after_ms
        self._read = client.register_script(_READ)
        self._add = client.register_script(_ADD)
        self._forget = client.register_script(_FORGET)

    def stream(self, definition_id: str, version: int) -> str:
        """The stream of one (definition, version): the version, an int, comes last, so
        no two pairs share a key."""
        return f"{self.prefix}:ready:{definition_id}:{version}"

    async def add(self, definition_id: str, version: int, workflow_id: str) -> None:
        """Append a workflow's id to its definition's stream and wake the hosts."""
        stream = self.stream(definition_id, version)
        await self._add(keys=[stream, self.channel], args=[workflow_id, MAX_LENGTH])

    async def read(
        self, consumer: str, count: int, pairs: Sequence[tuple[str, int]]
    ) -> list[Entry]:
        """Up to ``count`` entries of the pairs' streams for ``consumer``: first those
        another reader left unacknowledged for ``reclaim_after_ms``, then new ones."""
        if count <= 0 or not pairs:
            return []
        keys = [self.stream(definition_id, version) for definition_id, version in pairs]
        rows = await self._read(keys=keys, args=[GROUP, consumer, count, self.reclaim_after_ms])
        return [Entry(_text(stream), _text(entry_id), _text(wid)) for stream, entry_id, wid in rows]

    async def ack(self, entries: Sequence[Entry]) -> None:
        """Acknowledge and delete entries (one round trip for them all)."""
        if not entries:
            return
        by_stream: dict[str, list[str]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        async with self.client.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, GROUP, *ids)
                pipe.xdel(stream, *ids)
            await pipe.execute()

    async def forget_idle_consumers(self, pairs: Sequence[tuple[str, int]], idle_ms: int) -> int:
        """Delete the consumers of the pairs' groups that hold no entry and have been
        idle for ``idle_ms`` (hosts that went away); returns how many."""
        if not pairs:
            return 0
        keys = [self.stream(definition_id, version) for definition_id, version in pairs]
        return int(await self._forget(keys=keys, args=[GROUP, idle_ms]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
