"""A clock tests move by hand."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import timedelta


class FakeClock:
    """A clock that only moves when told to; starts at a fixed, realistic time.

    Give it to :func:`wfe_core.testing.memory_backend` and leases, timers and event
    times follow it: ``advance(31)`` expires a 30-second lease without sleeping.
    Stores built on this clock are woken on every advance, so a host waiting for
    work notices timers that just became due.
    """

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms
        self._listeners: list[weakref.WeakMethod[Callable[[], None]]] = []

    def now_ms(self) -> int:
        """Current fake time in milliseconds since the Unix epoch."""
        return self._now

    def advance(self, delta: float | timedelta) -> None:
        """Move time forward by ``delta`` (seconds or a ``timedelta``).

        Raises:
            ValueError: if ``delta`` is negative; this clock never goes back.
        """
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else delta
        if seconds < 0:
            raise ValueError(f"cannot move a FakeClock backwards (advance by {seconds:g}s)")
        self._now += round(seconds * 1000)
        self._notify()

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Call the bound method ``callback`` after each :meth:`advance`.

        Held by weak reference, so a store that is no longer used is not kept alive
        by a clock shared between tests.
        """
        self._listeners.append(weakref.WeakMethod(callback))

    def _notify(self) -> None:
        alive: list[weakref.WeakMethod[Callable[[], None]]] = []
        for ref in self._listeners:
            callback = ref()
            if callback is not None:
                alive.append(ref)
                callback()
        self._listeners = alive
