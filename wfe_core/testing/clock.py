"""A clock tests move by hand."""

from __future__ import annotations

from datetime import timedelta


class FakeClock:
    """A clock that only moves when told to; starts at a fixed, realistic time."""

    def __init__(self, start_ms: int = 1_767_225_600_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, delta: float | timedelta) -> None:
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else delta
        self._now += int(seconds * 1000)
