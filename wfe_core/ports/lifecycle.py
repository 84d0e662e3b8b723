"""Lifecycle port: where the executor reports workflow and step events."""

from __future__ import annotations

from typing import Protocol

from wfe_core.events import LifecycleEvent


class LifecyclePublisher(Protocol):
    def publish(self, event: LifecycleEvent) -> None:
        """Hand an event to subscribers; never blocks and never raises."""
        ...
