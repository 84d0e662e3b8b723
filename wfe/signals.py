"""Signal handlers a host installs on its event loop, restorable to what they replaced."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | None


class SignalHandlers:
    """Handlers set with ``loop.add_signal_handler``, and the ones they replaced."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        signals: Sequence[int],
        on_signal: Callable[[int], None],
    ) -> None:
        self._loop = loop
        self._previous: dict[int, Handler] = {}
        try:
            for signum in signals:
                previous = signal.getsignal(signum)
                loop.add_signal_handler(signum, on_signal, signum)
                # The same function again means the loop's own no-op hook was there (a
                # handler added with add_signal_handler): putting it back would leave
                # the signal ignored, so the loop's default is restored instead.
                self._previous[signum] = None if previous is signal.getsignal(signum) else previous
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Remove the handlers and restore the ones they replaced (callable again)."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            self._loop.remove_signal_handler(signum)
            if handler is not None:
                signal.signal(signum, handler)
