"""A first-come semaphore in which urgent holders jump the queue.

Two uses. SQLite's single writer per process: lease renewals and releases are urgent,
since if they waited behind a host's own backlog of step commits, a healthy, busy host
would lose its leases and other hosts would run its steps again. And the connections of
a pool: thousands of concurrent calls (``asyncio.gather`` of starts) queue here, in
order and without a time limit, instead of timing out inside the pool, and lease upkeep
still gets the next free connection. Waiters are served strictly in order within each
class.
"""

from __future__ import annotations

import asyncio
from collections import deque


class PriorityGate:
    """Up to ``capacity`` holders; waiting urgent holders go before ordinary ones."""

    def __init__(self, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"a gate needs a capacity of at least 1, not {capacity}")
        self.capacity = capacity
        self._held = 0
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._ordinary: deque[asyncio.Future[None]] = deque()

    def hold(self, *, urgent: bool = False) -> _Hold:
        """A place, held for an ``async with`` block."""
        return _Hold(self, urgent)

    async def _acquire(self, urgent: bool) -> None:
        if self._held < self.capacity and not self._urgent and not self._ordinary:
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._ordinary
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # it was handed to us as we were cancelled: pass it on
            elif waiter in queue:  # _release may already have dropped it
                queue.remove(waiter)
            raise

    def _release(self) -> None:
        for queue in (self._urgent, self._ordinary):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # the place passes on; _held stays the same
                    return
        self._held -= 1

    @property
    def locked(self) -> bool:
        """Whether every place is taken."""
        return self._held >= self.capacity

    @property
    def held(self) -> int:
        return self._held


class _Hold:
    """``async with gate.hold():`` (a class rather than a generator: it is entered
    around every transaction)."""

    __slots__ = ("_gate", "_urgent")

    def __init__(self, gate: PriorityGate, urgent: bool) -> None:
        self._gate = gate
        self._urgent = urgent

    async def __aenter__(self) -> None:
        await self._gate._acquire(self._urgent)

    async def __aexit__(self, *exc_info: object) -> None:
        self._gate._release()
