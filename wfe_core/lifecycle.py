"""In-process lifecycle hub: delivers events to subscribers in order, isolated from them.

Publishing never blocks and never raises. One dispatcher task calls subscribers in the
order events were published; a subscriber that raises (or hangs past its timeout) is
logged and skipped, and never breaks a workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

from wfe_core.events import LifecycleEvent, StepEvent, WorkflowFailed

Subscriber = Callable[[LifecycleEvent], Awaitable[None] | None]

log = logging.getLogger("wfe.lifecycle")


class LifecycleHub:
    """The default :class:`~wfe_core.ports.LifecyclePublisher`."""

    def __init__(self, subscriber_timeout: float = 5.0) -> None:
        self._subscribers: list[Subscriber] = []
        self._queue: asyncio.Queue[LifecycleEvent | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._timeout = subscriber_timeout

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add a subscriber (sync or async); returns a function that removes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: LifecycleEvent) -> None:
        if self._queue is not None and self._subscribers:
            self._queue.put_nowait(event)

    def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._dispatch(), name="wfe-lifecycle")

    async def stop(self) -> None:
        """Deliver what is queued, then stop the dispatcher."""
        if self._task is None or self._queue is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task, self._queue = None, None

    async def drain(self) -> None:
        """Return once every event published so far has been delivered (at once when
        the hub is not running)."""
        if self._queue is not None:
            await self._queue.join()

    async def _dispatch(self) -> None:
        queue = self._queue
        assert queue is not None
        while (event := await queue.get()) is not None:
            try:
                for subscriber in list(self._subscribers):
                    await self._deliver(subscriber, event)
            finally:
                queue.task_done()
        queue.task_done()

    async def _deliver(self, subscriber: Subscriber, event: LifecycleEvent) -> None:
        try:
            result = subscriber(event)
            if inspect.isawaitable(result):
                await asyncio.wait_for(result, self._timeout)
        except Exception:
            log.exception("lifecycle subscriber %r failed on %s", subscriber, type(event).__name__)


class LoggingSubscriber:
    """Logs every lifecycle event through :mod:`logging` (logger ``wfe.events``)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("wfe.events")

    def __call__(self, event: LifecycleEvent) -> None:
        level = logging.WARNING if isinstance(event, WorkflowFailed) else logging.INFO
        if not self._log.isEnabledFor(level):
            return  # the common case in production: INFO is off for wfe.events
        step = (
            f" step={event.step_name!r} attempt={event.attempt}"
            if isinstance(event, StepEvent)
            else ""
        )
        self._log.log(
            level,
            "%s workflow=%s definition=%s v%d%s",
            type(event).__name__,
            event.workflow_id,
            event.definition_id,
            event.version,
            step,
        )
