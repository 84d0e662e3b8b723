"""The synced database clock: corrected by each reading, yet never going back."""

from __future__ import annotations

from wfe_core.clock import SyncedClock


def test_a_lower_reading_after_a_slow_round_trip_does_not_turn_the_clock_back():
    clock = SyncedClock()
    clock.sync(1_000_050)  # a reading inflated by a 50 ms round trip
    first = clock.now_ms()
    clock.sync(1_000_001)  # the next, fast reading corrects the estimate downwards
    second = clock.now_ms()
    assert first >= 1_000_050
    assert second >= first, "times stamped one after another must keep their order"


def test_the_clock_follows_a_reading_that_moves_it_forward():
    clock = SyncedClock()
    clock.sync(1_000)
    clock.sync(9_000_000)
    assert clock.now_ms() >= 9_000_000
