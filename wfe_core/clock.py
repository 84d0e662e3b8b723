"""Clocks. Leases and timers compare against the store's clock; these are the sources."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock time of this host."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class SyncedClock:
    """The database's clock, estimated between readings with this host's monotonic clock.

    Every time a provider learns the database time (each claim returns it) it calls
    :meth:`sync`; host wall-clock steps and skew never enter lease or timer arithmetic.

    A reading taken over a slow round trip overestimates, and the next, faster one
    corrects it downwards; :meth:`now_ms` never goes back meanwhile (it holds still until
    the estimate catches up), so times this host stamps one after another keep their
    order (step end times order a saga's compensations).
    """

    def __init__(self) -> None:
        self._base_db_ms: int | None = None
        self._base_mono_ns = 0
        self._last_ms = 0

    def sync(self, db_now_ms: int) -> None:
        self._base_db_ms = db_now_ms
        self._base_mono_ns = time.monotonic_ns()

    @property
    def synced(self) -> bool:
        return self._base_db_ms is not None

    def now_ms(self) -> int:
        if self._base_db_ms is None:
            estimate = time.time_ns() // 1_000_000
        else:
            estimate = self._base_db_ms + (time.monotonic_ns() - self._base_mono_ns) // 1_000_000
        self._last_ms = max(self._last_ms, estimate)
        return self._last_ms
