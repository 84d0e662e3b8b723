"""Clock port: the time source for durable timers.

Providers own the authoritative clock (the database's); the in-memory providers use an
injectable clock so tests can step time instead of sleeping.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Current time in milliseconds since the Unix epoch."""
        ...
